"""Pages for giving time (residents), organising it (organisers) and approving it (council).

Views are thin: read the form, call ``volunteering.operations``, commit once, redirect.
Times are shown and typed in UK time (Europe/London) and stored in UTC.
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, or_, select

from core.audit import record
from core.errors import DomainError, InvalidRequest
from core.extensions import db
from core.forms import RevokeInvitationForm
from core.headers import allows_camera
from core.invitations import Invitation, pending_invitations
from core.models import Role, User
from core.qrcodes import qr_svg
from core.request_guard import MAX_INT
from core.security import roles_required
from core.timeutil import utcnow
from core.views import safe_next
from volunteering import (
    demo,  # noqa: F401 - registers the @demo_loader
    tokens,
)
from volunteering import operations as ops
from volunteering.forms import (
    ActivityForm,
    ActivitySearchForm,
    AttendanceCsvForm,
    AttendanceSheetForm,
    CardLookupForm,
    CardScanForm,
    ClaimFilterForm,
    ConfirmForm,
    InviteForm,
    OrganisationForm,
    RejectForm,
    SessionForm,
)
from volunteering.models import (
    Activity,
    ActivityStatus,
    Attendance,
    AttendanceSource,
    Claim,
    Organisation,
    OrganisationMember,
    OrganisationStatus,
    SessionSignup,
    VolunteeringSession,
)

volunteering_bp = Blueprint(
    "volunteering",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/volunteering",
    cli_group="volunteering",
)

UK = ZoneInfo("Europe/London")
COUNCIL = (Role.COUNCIL, Role.ADMIN)


@volunteering_bp.cli.command("close-missed-checkouts")
def close_missed_checkouts_command() -> None:
    """Close attendances left open after their session and flag their claims (the job)."""
    import click

    closed = ops.close_missed_checkouts()
    db.session.commit()
    click.echo(f"{len(closed)} attendance{'s' if len(closed) != 1 else ''} closed.")


@volunteering_bp.cli.command("send-digests")
def send_digests_command() -> None:
    """Queue the organisers' digests of missed check-outs (the daily job)."""
    import click

    queued = ops.send_missed_checkout_digests()
    db.session.commit()
    click.echo(f"{queued} digest{'s' if queued != 1 else ''} queued.")


@volunteering_bp.record_once
def declare_public_pages(state) -> None:
    """The scan page is public: a signed-out resident's scan is kept while they sign in."""
    app = state.app
    app.public_endpoints = getattr(app, "public_endpoints", set()) | {"volunteering.scan"}


@volunteering_bp.app_template_filter("uk_time")
def uk_time(value: datetime | None, with_date: bool = True) -> str:
    """``Tue 3 Nov 2026, 10:00`` in UK time."""
    if not value:
        return ""
    local = value.astimezone(UK)
    clock = f"{local:%H:%M}"
    return f"{local:%a} {local.day} {local:%b %Y}, {clock}" if with_date else clock


def uk_datetime(day: date, clock: str) -> datetime:
    """A UK date and ``HH:MM`` as an aware UTC datetime."""
    hours, minutes = (int(part) for part in clock.replace(".", ":").split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=UK).astimezone(ZoneInfo("UTC"))


def domain_error_to_form(form, error: DomainError, field_name: str | None = None) -> None:
    """Show an operation's refusal next to the right field (or at the top)."""
    names = list(getattr(error, "fields", {}) or {}) + ([field_name] if field_name else [])
    for name in names:
        field = getattr(form, name, None)
        if field is not None:
            field.errors = list(field.errors) + [error.message]
            return
    form.form_errors.append(error.message)


def status_of(form) -> int:
    return 400 if form.errors else 200


# --- residents: browse, sign up, scan, card ----------------------------------------------


@volunteering_bp.get("/activities")
@roles_required(Role.RESIDENT, Role.ORGANISER)
def activities():
    """Residents find sessions of approved activities by words, category, ward and date."""
    form = ActivitySearchForm(request.args)
    form.validate()
    query = (
        select(VolunteeringSession)
        .join(Activity)
        .where(
            Activity.status == ActivityStatus.APPROVED.value,
            VolunteeringSession.cancelled_at.is_(None),
            VolunteeringSession.ends_at > utcnow(),
        )
        .order_by(VolunteeringSession.starts_at)
        .limit(100)
    )
    if form.q.data:
        term = f"%{form.q.data.strip().lower()}%"
        query = query.where(
            or_(func.lower(Activity.title).like(term), func.lower(Activity.description).like(term))
        )
    if form.category.data:
        query = query.where(Activity.category == form.category.data)
    if form.ward.data:
        query = query.where(Activity.ward == form.ward.data)
    if form.day.data and not form.day.errors:
        start = uk_datetime(form.day.data, "00:00")
        query = query.where(
            VolunteeringSession.starts_at >= start,
            VolunteeringSession.starts_at < start + timedelta(days=1),
        )
    sessions = db.session.execute(query).scalars().all()
    signed_up = set()
    counts = {}
    if sessions:
        ids = [s.id for s in sessions]
        signed_up = set(
            db.session.execute(
                select(SessionSignup.session_id).where(
                    SessionSignup.session_id.in_(ids),
                    SessionSignup.resident_id == current_user.id,
                    SessionSignup.cancelled_at.is_(None),
                )
            ).scalars()
        )
        counts = dict(
            db.session.execute(
                select(SessionSignup.session_id, func.count())
                .where(SessionSignup.session_id.in_(ids), SessionSignup.cancelled_at.is_(None))
                .group_by(SessionSignup.session_id)
            ).all()
        )
    return render_template(
        "volunteering/activities.html",
        form=form,
        sessions=sessions,
        signed_up=signed_up,
        counts=counts,
        confirm_form=ConfirmForm(),
        searched=bool(request.args),
    )


@volunteering_bp.post("/sessions/<int:session_id>/sign-up")
@roles_required(Role.RESIDENT)
def sign_up(session_id: int):
    """A resident takes a place at a session."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    session = ops.get_session(session_id)
    try:
        ops.sign_up(current_user, session)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "info")
    else:
        db.session.commit()
        flash(f"You have a place at {ops.session_label(session)}.", "success")
    return redirect(safe_next(request.form.get("back")) or url_for("volunteering.activities"))


@volunteering_bp.post("/sessions/<int:session_id>/cancel")
@roles_required(Role.RESIDENT)
def cancel_sign_up(session_id: int):
    """A resident gives their place back."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    session = ops.get_session(session_id)
    ops.cancel_signup(current_user, session)
    db.session.commit()
    flash(f"You have cancelled your place at {ops.session_label(session)}.", "success")
    return redirect(url_for("volunteering.activities"))


@volunteering_bp.route("/c/<token>", methods=["GET", "POST"])
def scan(token: str):
    """Where a session's check-in QR code leads: check in, or out the second time.

    Signed out: the scan is checked and kept in a short-lived receipt while the resident
    signs in (their sign-in may outlast the rotating code). Signed in: a button records it;
    the form's nonce makes a double tap record once.
    """
    try:
        scanned = tokens.read_checkin_token(token)
        session = ops.get_session(scanned.session_id)
        ops.require_open(session, scanned.scanned_at or utcnow())
    except DomainError as error:
        return render_template("volunteering/scan.html", error=error, session=None), error.status
    if not current_user.is_authenticated:
        receipt = tokens.receipt_token(session.id, utcnow())
        flash("Sign in to record your check-in.", "info")
        return redirect(url_for("core.sign_in", next=url_for("volunteering.scan", token=receipt)))
    if not current_user.has_role(Role.RESIDENT):
        abort(403)
    form = ConfirmForm()
    attendance = db.session.execute(
        select(Attendance).where(
            Attendance.session_id == session.id, Attendance.resident_id == current_user.id
        )
    ).scalar_one_or_none()
    if form.validate_on_submit():
        nonce = (request.form.get("nonce") or "")[:100] or None
        try:
            result = ops.check_in_with_token(current_user, token, nonce)
        except DomainError as error:
            db.session.rollback()
            return (
                render_template("volunteering/scan.html", error=error, session=session),
                error.status,
            )
        db.session.commit()
        return render_template(
            "volunteering/scan_done.html", result=result, session=session, claim=result.claim
        )
    return render_template(
        "volunteering/scan.html",
        session=session,
        attendance=attendance,
        form=form,
        nonce=secrets.token_urlsafe(12),
        error=None,
    )


@volunteering_bp.get("/my-hours")
@roles_required(Role.RESIDENT)
def my_hours():
    """The resident's volunteering history: every attendance, its claim and its outcome."""
    attendances = (
        db.session.execute(
            select(Attendance)
            .where(Attendance.resident_id == current_user.id)
            .order_by(Attendance.checked_in_at.desc())
            .limit(200)
        )
        .scalars()
        .all()
    )
    return render_template("volunteering/my_hours.html", attendances=attendances)


@volunteering_bp.get("/card")
@roles_required(Role.RESIDENT)
def card():
    """The resident's personal card: a QR code and a number, to print or show."""
    return render_card(current_user, own=True)


def render_card(resident: User, own: bool):
    token = tokens.card_token(resident.id)
    number = tokens.card_number(resident.id)
    return render_template(
        "volunteering/card.html",
        resident=resident,
        own=own,
        number=number,
        qr=qr_svg(token, title=f"Card code of {resident.display_name}"),
    )


@volunteering_bp.get("/cards")
@roles_required(Role.ORGANISER, *COUNCIL)
def card_lookup():
    """Organisers and council staff print a card for a resident they help."""
    form = CardLookupForm(request.args)
    if form.email.data:
        resident = db.session.execute(
            select(User).where(User.email == form.email.data.strip().lower())
        ).scalar_one_or_none()
        if resident is not None and Role.RESIDENT in resident.roles:
            # Staff printing someone's card is a staff action: it goes in the audit trail.
            record(current_user, "card.printed", f"user:{resident.id}")
            db.session.commit()
            return render_card(resident, own=False)
        form.email.errors = ["No resident has an account with that email address"]
    return render_template("volunteering/card_lookup.html", form=form), status_of(form)


# --- organisers ----------------------------------------------------------------------------


def my_organisations() -> list[Organisation]:
    return (
        db.session.execute(
            select(Organisation)
            .join(OrganisationMember)
            .where(OrganisationMember.user_id == current_user.id)
            .order_by(Organisation.name)
        )
        .scalars()
        .all()
    )


@volunteering_bp.get("/organise")
@roles_required(Role.ORGANISER)
def organise():
    """The organiser's start page: their organisations, activities and next sessions."""
    organisations = my_organisations()
    ids = [o.id for o in organisations] or [-1]
    upcoming = (
        db.session.execute(
            select(VolunteeringSession)
            .join(Activity)
            .where(
                Activity.organisation_id.in_(ids),
                VolunteeringSession.ends_at > utcnow() - timedelta(days=1),
            )
            .order_by(VolunteeringSession.starts_at)
            .limit(20)
        )
        .scalars()
        .all()
    )
    return render_template(
        "volunteering/organise.html", organisations=organisations, upcoming=upcoming
    )


@volunteering_bp.route("/organise/organisations/new", methods=["GET", "POST"])
@roles_required(Role.ORGANISER)
def new_organisation():
    """Propose an organisation for the council to approve."""
    form = OrganisationForm()
    if form.validate_on_submit():
        try:
            organisation = ops.propose_organisation(
                current_user, form.name.data, form.description.data or ""
            )
        except DomainError as error:
            db.session.rollback()
            domain_error_to_form(form, error)
        else:
            db.session.commit()
            flash(f"{organisation.name} has been sent to the council for approval.", "success")
            return redirect(url_for("volunteering.organisation", organisation_id=organisation.id))
    return render_template("volunteering/organisation_new.html", form=form), status_of(form)


@volunteering_bp.route("/organise/organisations/<int:organisation_id>", methods=["GET", "POST"])
@roles_required(Role.ORGANISER)
def organisation(organisation_id: int):
    """One organisation: its status, activities and organisers; invite another organiser."""
    organisation = ops.get_organisation(organisation_id)
    if not ops.is_organiser_of(current_user, organisation.id):
        abort(403)
    form = InviteForm()
    if form.validate_on_submit():
        try:
            member = ops.invite_organiser(current_user, organisation, form.email.data)
        except DomainError as error:
            db.session.rollback()
            domain_error_to_form(form, error, "email")
        else:
            db.session.commit()
            if isinstance(member, Invitation):
                flash(
                    f"{member.email} has no account yet: we have emailed them an invitation. "
                    "They become an organiser when they create an account with that address.",
                    "success",
                )
            else:
                flash(f"{member.user.display_name} is now an organiser.", "success")
            return redirect(url_for("volunteering.organisation", organisation_id=organisation.id))
    return (
        render_template(
            "volunteering/organisation.html",
            organisation=organisation,
            form=form,
            invitations=pending_invitations(ops.ORGANISER_INVITATION.name, organisation.id),
            revoke_form=RevokeInvitationForm(),
        ),
        status_of(form),
    )


@volunteering_bp.route(
    "/organise/organisations/<int:organisation_id>/activities/new", methods=["GET", "POST"]
)
@roles_required(Role.ORGANISER)
def new_activity(organisation_id: int):
    """Propose an activity of an approved organisation."""
    organisation = ops.get_organisation(organisation_id)
    if not ops.is_organiser_of(current_user, organisation.id):
        abort(403)
    form = ActivityForm()
    if form.validate_on_submit():
        try:
            activity = ops.propose_activity(
                current_user,
                organisation,
                title=form.title.data,
                description=form.description.data or "",
                category=form.category.data,
                location=form.location.data,
                ward=form.ward.data,
                credits_per_hour=form.credits_per_hour.data,
                capacity=form.capacity.data,
            )
        except DomainError as error:
            db.session.rollback()
            domain_error_to_form(form, error)
        else:
            db.session.commit()
            flash(f"{activity.title} has been sent to the council for approval.", "success")
            return redirect(url_for("volunteering.activity", activity_id=activity.id))
    return (
        render_template("volunteering/activity_new.html", organisation=organisation, form=form),
        status_of(form),
    )


@volunteering_bp.route("/organise/activities/<int:activity_id>", methods=["GET", "POST"])
@roles_required(Role.ORGANISER)
def activity(activity_id: int):
    """One activity: its status and sessions; schedule another session."""
    activity = ops.get_activity(activity_id)
    if not ops.is_organiser_of(current_user, activity.organisation_id):
        abort(403)
    form = SessionForm()
    if form.validate_on_submit():
        try:
            session = ops.schedule_session(
                current_user,
                activity,
                uk_datetime(form.day.data, form.starts.data),
                uk_datetime(form.day.data, form.ends.data),
            )
        except DomainError as error:
            db.session.rollback()
            domain_error_to_form(form, error, "ends")
        else:
            db.session.commit()
            flash(f"Session added: {uk_time(session.starts_at)}.", "success")
            return redirect(url_for("volunteering.activity", activity_id=activity.id))
    return (
        render_template("volunteering/activity.html", activity=activity, form=form),
        status_of(form),
    )


def organised_session_or_403(session_id: int) -> VolunteeringSession:
    session = ops.get_session(session_id)
    if not ops.is_organiser_of(current_user, session.activity.organisation_id):
        abort(403)
    return session


@volunteering_bp.get("/organise/sessions/<int:session_id>")
@roles_required(Role.ORGANISER)
def session(session_id: int):
    """One session: who signed up, who came, and the ways to check people in."""
    session = organised_session_or_403(session_id)
    attendances = (
        db.session.execute(
            select(Attendance)
            .where(Attendance.session_id == session.id)
            .order_by(Attendance.checked_in_at)
        )
        .scalars()
        .all()
    )
    signups = (
        db.session.execute(
            select(User)
            .join(SessionSignup, SessionSignup.resident_id == User.id)
            .where(SessionSignup.session_id == session.id, SessionSignup.cancelled_at.is_(None))
            .order_by(User.display_name)
        )
        .scalars()
        .all()
    )
    return render_template(
        "volunteering/session.html",
        session=session,
        attendances=attendances,
        signups=signups,
        is_open=ops.is_open(session),
        has_ended=session.ends_at <= utcnow(),
    )


@volunteering_bp.post("/organise/sessions/<int:session_id>/cancel")
@roles_required(Role.ORGANISER)
def cancel_session(session_id: int):
    """Cancel a session; residents who signed up are emailed."""
    session = organised_session_or_403(session_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        ops.cancel_session(current_user, session)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "info")
    else:
        db.session.commit()
        flash("The session is cancelled. Everyone who signed up has been emailed.", "success")
    return redirect(url_for("volunteering.session", session_id=session.id))


@volunteering_bp.get("/organise/sessions/<int:session_id>/check-in")
@roles_required(Role.ORGANISER)
def checkin_screen(session_id: int):
    """The screen shown at the session: a QR code that rotates without reloading the page."""
    session = organised_session_or_403(session_id)
    return render_template(
        "volunteering/checkin_screen.html",
        session=session,
        code=checkin_code(session),
        is_open=ops.is_open(session),
    )


def checkin_code(session: VolunteeringSession) -> dict:
    from volunteering.api import checkin_code as code

    data = code(session)
    data["expires_at"] = data["expires_at"].isoformat()
    return data


@volunteering_bp.get("/organise/sessions/<int:session_id>/check-in-code")
@roles_required(Role.ORGANISER)
def checkin_code_json(session_id: int):
    """The current rotating code, fetched by the check-in screen's script."""
    session = organised_session_or_403(session_id)
    response = jsonify(checkin_code(session))
    response.headers["Cache-Control"] = "no-store"
    return response


@volunteering_bp.get("/organise/sessions/<int:session_id>/poster")
@roles_required(Role.ORGANISER)
def poster(session_id: int):
    """A printable poster whose QR code works only while the session is open."""
    session = organised_session_or_403(session_id)
    url = ops.checkin_url(tokens.poster_token(session.id))
    opens, closes = ops.window_of(session)
    return render_template(
        "volunteering/poster.html",
        session=session,
        qr=qr_svg(url, title=f"Check-in code for {session.activity.title}"),
        opens=opens,
        closes=closes,
    )


@volunteering_bp.route("/organise/sessions/<int:session_id>/scan-cards", methods=["GET", "POST"])
@allows_camera
@roles_required(Role.ORGANISER)
def scan_cards(session_id: int):
    """Check people in and out with their printed card: the camera, or the typed number."""
    session = organised_session_or_403(session_id)
    form = CardScanForm()
    result = resident = None
    if form.validate_on_submit():
        try:
            result = ops.check_in_with_card(
                current_user, session.id, form.card.data, form.nonce.data or None
            )
        except DomainError as error:
            db.session.rollback()
            domain_error_to_form(form, error, "card")
        else:
            db.session.commit()
            resident = db.session.get(User, result.attendance.resident_id)
            form = CardScanForm(formdata=None)
    form.nonce.data = secrets.token_urlsafe(12)
    return (
        render_template(
            "volunteering/scan_cards.html",
            session=session,
            form=form,
            result=result,
            resident=resident,
            is_open=ops.is_open(session),
        ),
        status_of(form),
    )


@volunteering_bp.route("/organise/sessions/<int:session_id>/attendance", methods=["GET", "POST"])
@roles_required(Role.ORGANISER)
def add_attendance(session_id: int):
    """Type in attendance from a paper sign-in sheet: rows in a form, or a CSV file."""
    session = organised_session_or_403(session_id)
    sheet = AttendanceSheetForm(prefix="sheet")
    upload = AttendanceCsvForm(prefix="csv")
    row_errors: list[str] = []
    if request.method == "POST":
        if "csv-submit" in request.form and upload.validate_on_submit():
            text = upload.file.data.read(1_000_000).decode("utf-8-sig", errors="replace")
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] and rows[0][0].strip().lower() in ("who", "email", "card"):
                rows = rows[1:]
            entries = [(row + ["", "", ""])[:3] for row in rows if any(c.strip() for c in row)]
            added, row_errors = record_sheet(session, entries, AttendanceSource.SHEET, "CSV")
            if not row_errors:
                flash(
                    f"{added} attendance{'s' if added != 1 else ''} added from the file.", "success"
                )
                return redirect(url_for("volunteering.session", session_id=session.id))
            upload.file.errors = ["Nothing was added. Correct these rows and upload again."]
        elif "sheet-submit" in request.form and sheet.validate_on_submit():
            entries = [
                (row.who.data or "", row.checked_in.data or "", row.checked_out.data or "")
                for row in sheet.rows
                if (row.who.data or "").strip()
            ]
            if not entries:
                sheet.rows[0].who.errors = ["Enter at least one person"]
            else:
                added, row_errors = record_sheet(session, entries, AttendanceSource.MANUAL, "Row")
                if not row_errors:
                    flash(f"{added} attendance{'s' if added != 1 else ''} added.", "success")
                    return redirect(url_for("volunteering.session", session_id=session.id))
                sheet.form_errors.append("Nothing was added. Correct these rows and try again.")
    status = 400 if (sheet.errors or upload.errors or row_errors) else 200
    return (
        render_template(
            "volunteering/attendance.html",
            session=session,
            sheet=sheet,
            upload=upload,
            row_errors=row_errors,
        ),
        status,
    )


def resident_from(who: str) -> int:
    """A resident id from an email address or a card number."""
    who = who.strip()
    if "@" in who:
        user = db.session.execute(
            select(User).where(User.email == who.lower())
        ).scalar_one_or_none()
        if user is None or Role.RESIDENT not in user.roles:
            raise InvalidRequest(f"no resident has the email address {who}")
        return user.id
    return ops.resident_id_from_card(who)


def record_sheet(session, entries, source, label) -> tuple[int, list[str]]:
    """Add every row, or none: the errors of each bad row, numbered as on the sheet."""
    local_day = session.starts_at.astimezone(UK).date()
    errors: list[str] = []
    added = 0
    savepoint = db.session.begin_nested()
    for number, (who, arrived, left) in enumerate(entries, start=1):
        try:
            if not who.strip():
                raise InvalidRequest("enter an email address or card number")
            resident_id = resident_from(who)
            checked_in = (
                uk_datetime(local_day, arrived.strip()) if arrived.strip() else session.starts_at
            )
            checked_out = uk_datetime(local_day, left.strip()) if left.strip() else session.ends_at
            key = f"sheet:{resident_id}:{checked_in.isoformat()}:{checked_out.isoformat()}"
            ops.add_attendance(
                current_user,
                session,
                resident_id=resident_id,
                checked_in_at=checked_in,
                checked_out_at=checked_out,
                idempotency_key=key,
                source=source,
            )
            added += 1
        except (DomainError, ValueError) as error:
            message = getattr(error, "message", None) or "times must look like 09:30"
            errors.append(f"{label} {number}: {message}")
    if errors:
        savepoint.rollback()
        db.session.rollback()
        return 0, errors
    savepoint.commit()
    db.session.commit()
    return added, []


# --- council -------------------------------------------------------------------------------


@volunteering_bp.get("/council/organisations")
@roles_required(*COUNCIL)
def council_organisations():
    """Organisations waiting for a decision (or any status, by filter)."""
    status = request.args.get("status", "pending")
    if status not in {s.value for s in OrganisationStatus}:
        status = "pending"
    rows = (
        db.session.execute(
            select(Organisation).where(Organisation.status == status).order_by(Organisation.id)
        )
        .scalars()
        .all()
    )
    return render_template(
        "volunteering/council_organisations.html",
        organisations=rows,
        status=status,
        statuses=list(OrganisationStatus),
        confirm_form=ConfirmForm(),
        reject_form=RejectForm(),
    )


@volunteering_bp.post(
    "/council/organisations/<int:organisation_id>/<any(approve,reject,suspend):decision>"
)
@roles_required(*COUNCIL)
def decide_organisation(organisation_id: int, decision: str):
    """Approve, reject (with reason) or suspend (with reason) an organisation."""
    organisation = ops.get_organisation(organisation_id)
    return decide(
        lambda reason: {
            "approve": lambda: ops.approve_organisation(current_user, organisation),
            "reject": lambda: ops.reject_organisation(current_user, organisation, reason),
            "suspend": lambda: ops.suspend_organisation(current_user, organisation, reason),
        }[decision](),
        decision != "approve",
        f"{organisation.name}: {decision_words(decision)}.",
        url_for("volunteering.council_organisations"),
    )


def decision_words(decision: str) -> str:
    return {"approve": "approved", "reject": "rejected", "suspend": "suspended"}[decision]


def decide(action, needs_reason: bool, done: str, back: str):
    """Run a council decision from a small form, then go back to the queue."""
    form = RejectForm() if needs_reason else ConfirmForm()
    if not form.validate_on_submit():
        flash("Enter a reason to reject." if needs_reason else "Try again.", "info")
        return redirect(back)
    try:
        action(form.reason.data if needs_reason else None)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "info")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(back)


@volunteering_bp.get("/council/activities")
@roles_required(*COUNCIL)
def council_activities():
    """Activities waiting for a decision, filtered by status, category and ward."""
    status = request.args.get("status", "pending")
    if status not in {s.value for s in ActivityStatus}:
        status = "pending"
    query = select(Activity).where(Activity.status == status).order_by(Activity.id)
    search = ActivitySearchForm(request.args)
    if search.category.data:
        query = query.where(Activity.category == search.category.data)
    if search.ward.data:
        query = query.where(Activity.ward == search.ward.data)
    return render_template(
        "volunteering/council_activities.html",
        activities=db.session.execute(query.limit(200)).scalars().all(),
        status=status,
        statuses=list(ActivityStatus),
        search=search,
        confirm_form=ConfirmForm(),
        reject_form=RejectForm(),
    )


@volunteering_bp.post("/council/activities/<int:activity_id>/<any(approve,reject):decision>")
@roles_required(*COUNCIL)
def decide_activity(activity_id: int, decision: str):
    """Approve or reject (with reason) an activity."""
    activity = ops.get_activity(activity_id)
    return decide(
        lambda reason: (
            ops.approve_activity(current_user, activity)
            if decision == "approve"
            else ops.reject_activity(current_user, activity, reason)
        ),
        decision == "reject",
        f"{activity.title}: {decision_words(decision)}.",
        url_for("volunteering.council_activities"),
    )


@volunteering_bp.get("/council/claims")
@roles_required(*COUNCIL)
def council_claims():
    """The claims queue, with filters by status, flag and organisation."""
    form = ClaimFilterForm(request.args)
    organisations = (
        db.session.execute(select(Organisation).order_by(Organisation.name)).scalars().all()
    )
    form.organisation.choices = [("", "Any")] + [(str(o.id), o.name) for o in organisations]
    status = form.status.data or "pending"
    query = (
        select(Claim)
        .join(VolunteeringSession, Claim.session_id == VolunteeringSession.id)
        .join(Activity, VolunteeringSession.activity_id == Activity.id)
        .where(Claim.status == status)
        .order_by(Claim.id)
    )
    if form.organisation.data and form.organisation.data.isdigit():
        query = query.where(Activity.organisation_id == int(form.organisation.data))
    if form.flag.data in ops.CLAIM_FLAGS:
        query = ops.claims_flagged(query, form.flag.data)
    claims = db.session.execute(query.limit(200)).scalars().all()
    return render_template(
        "volunteering/council_claims.html",
        claims=claims,
        form=form,
        status=status,
        confirm_form=ConfirmForm(),
        reject_form=RejectForm(),
    )


@volunteering_bp.post("/council/claims/approve")
@roles_required(*COUNCIL)
def approve_claims():
    """Approve the ticked claims; each one credits once, refusals are listed."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    ids = [
        int(v)
        for v in request.form.getlist("claim_ids")[:200]
        if v.isascii() and v.isdigit() and int(v) <= MAX_INT
    ]
    if not ids:
        flash("Select at least one claim to approve.", "info")
        return redirect(url_for("volunteering.council_claims"))
    approved, refused = ops.approve_claims(current_user, ids)
    db.session.commit()
    if approved:
        flash(f"{len(approved)} claim{'s' if len(approved) != 1 else ''} approved.", "success")
    for claim_id, message in refused.items():
        flash(f"Claim {claim_id} not approved: {message}", "info")
    return redirect(url_for("volunteering.council_claims"))


@volunteering_bp.post("/council/claims/<int:claim_id>/reject")
@roles_required(*COUNCIL)
def reject_claim(claim_id: int):
    """Reject one claim with a reason."""
    return decide(
        lambda reason: ops.reject_claim(current_user, claim_id, reason),
        True,
        f"Claim {claim_id} rejected.",
        url_for("volunteering.council_claims"),
    )
