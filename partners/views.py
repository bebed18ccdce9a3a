"""Pages for spending credits, for partner businesses and for the council's partner queue.

Views parse a form, call ``partners.operations``, commit once and redirect; a refusal
(``DomainError``) is rolled back and shown next to the form in words.
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.errors import DomainError, InvalidRequest
from core.extensions import db, limiter
from core.forms import RevokeInvitationForm
from core.headers import allows_camera
from core.invitations import Invitation, pending_invitations
from core.models import Role
from core.qrcodes import qr_svg
from core.security import roles_required
from partners import demo as _demo  # noqa: F401 - registers the partners' @demo_loader
from partners import operations
from partners.api import CODE_GUESS_LIMIT, failed_code_lookup
from partners.forms import (
    PARTNER_CATEGORIES,
    AddStaffForm,
    ConfirmForm,
    DirectoryForm,
    OfferForm,
    PartnerRegistrationForm,
    ReasonForm,
    RedemptionFilterForm,
    SettlementRateForm,
    SpendForm,
    TillCodeForm,
    TillConfirmForm,
)
from partners.models import (
    Offer,
    OfferStatus,
    Partner,
    PartnerMembership,
    PartnerStatus,
    Redemption,
    RedemptionCode,
    RedemptionStatus,
)

partners_bp = Blueprint(
    "partners",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/partners",
)

STAFF = (Role.PARTNER_STAFF,)
COUNCIL = (Role.COUNCIL, Role.ADMIN)


# --- helpers --------------------------------------------------------------------------------


def wards() -> list[str]:
    """The council's wards (the scheme's list, shared with activities)."""
    return list(current_app.config.get("VOLUNTEERING_WARDS") or [])


def choices(values, blank: str):
    return [("", blank)] + [(value, value) for value in values]


def show_error(form, error: DomainError) -> None:
    """An operation's refusal, shown next to the field it names (or above the form)."""
    db.session.rollback()
    if isinstance(error, InvalidRequest):
        for name, messages in (error.fields or {}).items():
            field = getattr(form, name, None)
            if field is not None:
                field.errors = list(field.errors) + [messages[0] if messages else error.message]
                return
    form.form_errors.append(error.message)


def status_of(form) -> int:
    return 400 if form.errors else 200


def staff_partner(partner_id: int, *, council_may_view: bool = False) -> Partner:
    """The partner of the URL, if the signed-in person works for it (404/403 otherwise)."""
    partner = db.get_or_404(Partner, partner_id)
    if council_may_view and current_user.has_role(*COUNCIL):
        return partner
    if not operations.is_staff_of(current_user, partner.id):
        abort(403)
    return partner


def resident_balance() -> int:
    """The signed-in resident's balance."""
    return operations.ledger().wallet_of(current_user.id).balance


def local_day_bounds(since, until):
    """UTC datetimes for the start of ``since`` and the end of ``until`` (local dates)."""
    zone = operations.scheme_zone()
    start = datetime.combine(since, datetime.min.time(), zone).astimezone(UTC) if since else None
    end = (
        datetime.combine(until + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
        if until
        else None
    )
    return start, end


# --- residents: the directory and spending --------------------------------------------------


@partners_bp.get("/offers")
@roles_required(Role.RESIDENT, Role.PARTNER_STAFF)
def offers():
    """The offer directory: approved partners' offers, by category and ward, within my means."""
    form = DirectoryForm(request.args)
    form.category.choices = choices(PARTNER_CATEGORIES, "Any kind")
    form.ward.choices = choices(wards(), "Anywhere")
    is_resident = current_user.has_role(Role.RESIDENT)
    balance = resident_balance() if is_resident else None
    filters = {}
    if form.validate():
        filters = {
            "text": form.q.data or "",
            "category": form.category.data or "",
            "ward": form.ward.data or "",
        }
        if is_resident and form.affordable.data:
            filters["max_cost"] = balance
    items = db.session.execute(operations.directory_query(**filters).limit(200)).scalars().all()
    return render_template(
        "partners/offers.html", form=form, items=items, balance=balance, is_resident=is_resident
    )


@partners_bp.route("/spend", methods=["GET", "POST"])
@roles_required(Role.RESIDENT)
def spend():
    """Show a one-time code (QR and short code) to spend credits at a partner's till."""
    form = SpendForm()
    if form.validate_on_submit():
        code, row = operations.issue_code(current_user)
        db.session.commit()
        seconds = int((row.expires_at - row.created_at).total_seconds())
        return render_template(
            "partners/spend_code.html",
            form=SpendForm(formdata=None),
            code=code,
            row=row,
            seconds=seconds,
            expires_local=row.expires_at.astimezone(operations.scheme_zone()),
            qr=qr_svg(code, title=f"Your code {code}"),
            balance=resident_balance(),
        )
    return render_template("partners/spend.html", form=form, balance=resident_balance())


@partners_bp.get("/spend/codes/<int:code_id>/status")
@roles_required(Role.RESIDENT)
def code_status(code_id: int):
    """Whether the resident's code was used or has expired (the code page asks every few
    seconds, so it can say "Done" without a reload)."""
    row = db.session.get(RedemptionCode, code_id)
    if row is None or row.resident_id != current_user.id:
        abort(404)
    state = "live"
    redemption = None
    if row.used_at is not None:
        state = "used"
        redemption = db.session.execute(
            select(Redemption).where(Redemption.code_id == row.id)
        ).scalar_one_or_none()
    elif row.expires_at <= datetime.now(UTC):
        state = "expired"
    body = {"state": state, "balance": resident_balance()}
    if redemption is not None:
        body["description"] = redemption.description
        body["credits"] = redemption.credits
    return jsonify(body)


# --- partner staff: registering, dashboard, till, offers, staff ------------------------------


@partners_bp.route("/business/register", methods=["GET", "POST"])
@roles_required()
def register():
    """Register a business to accept credits; council staff approve it."""
    form = PartnerRegistrationForm()
    form.ward.choices = choices(wards(), "Choose a ward") if wards() else [("", "Not listed")]
    if form.validate_on_submit():
        try:
            partner = operations.register_partner(
                current_user,
                name=form.name.data,
                address=form.address.data,
                category=form.category.data,
                ward=form.ward.data,
                opening_hours=form.opening_hours.data,
                contact_name=form.contact_name.data,
                contact_email=form.contact_email.data,
                contact_phone=form.contact_phone.data,
            )
        except DomainError as error:
            show_error(form, error)
        else:
            db.session.commit()
            flash(
                f"{partner.name} is registered. The council's scheme team will check it and "
                "let you know; you can then add offers and take credits.",
                "success",
            )
            return redirect(url_for("partners.business"))
    return render_template("partners/register.html", form=form), status_of(form)


@partners_bp.get("/business")
@roles_required()
def business():
    """Partner staff's start: the dashboard of their business (or a choice of them)."""
    mine = operations.partners_of(current_user)
    approved = [p for p in mine if p.is_approved and current_user.has_role(Role.PARTNER_STAFF)]
    if len(approved) == 1 and len(mine) == 1:
        return redirect(url_for("partners.dashboard", partner_id=approved[0].id))
    return render_template("partners/business.html", partners=mine)


@partners_bp.get("/business/till")
@roles_required(*STAFF)
def till_start():
    """The till of the one business you work for (or a choice of them)."""
    mine = [p for p in operations.partners_of(current_user) if p.is_approved]
    if len(mine) == 1:
        return redirect(url_for("partners.till", partner_id=mine[0].id))
    return render_template("partners/business.html", partners=mine, for_till=True)


def month_start(now: datetime) -> datetime:
    return operations.period_start("month", now)


@partners_bp.get("/business/<int:partner_id>")
@roles_required(*STAFF, *COUNCIL)
def dashboard(partner_id: int):
    """A partner's redemptions with filters and CSV, credits taken this month, money owed."""
    partner = staff_partner(partner_id, council_may_view=True)
    form, query = redemption_filter(partner)
    rows = db.session.execute(query.limit(200)).scalars().all()
    now = datetime.now(UTC)
    this_month = operations.period_totals(partner.id, month_start(now), now + timedelta(days=1))
    money = operations.owed_and_paid(partner.id)
    return render_template(
        "partners/dashboard.html",
        partner=partner,
        form=form,
        rows=rows,
        this_month=this_month,
        money=money,
        can_cancel=operations.can_cancel_at_till,
        is_staff=operations.is_staff_of(current_user, partner.id),
    )


def redemption_filter(partner: Partner):
    """The filter form of the dashboard and the query it selects."""
    form = RedemptionFilterForm(request.args)
    offers_of = db.session.execute(
        select(Offer.id, Offer.title).where(Offer.partner_id == partner.id).order_by(Offer.title)
    ).all()
    form.offer.choices = [("", "All offers")] + [(str(i), t) for i, t in offers_of]
    since = until = offer_id = status = None
    if request.args and form.validate():
        since, until = local_day_bounds(form.since.data, form.until.data)
        offer_id = int(form.offer.data) if (form.offer.data or "").isdigit() else None
        status = (
            form.status.data if form.status.data in {s.value for s in RedemptionStatus} else None
        )
    query = operations.redemptions_query(
        partner.id, since=since, until=until, offer_id=offer_id, status=status
    )
    return form, query


@partners_bp.get("/business/<int:partner_id>/redemptions.csv")
@roles_required(*STAFF, *COUNCIL)
def redemptions_csv(partner_id: int):
    """The dashboard's redemptions (same filters) as CSV."""
    partner = staff_partner(partner_id, council_may_view=True)
    _form, query = redemption_filter(partner)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "redemption_id",
            "created_at",
            "offer",
            "credits",
            "rate_pence",
            "amount_pence",
            "status",
            "resident_first_name",
            "taken_by",
            "cancel_reason",
        ]
    )
    for row in db.session.execute(query).scalars():
        writer.writerow(
            [
                row.id,
                row.created_at.isoformat(),
                csv_safe(row.offer.title),
                row.credits,
                row.settlement_rate_pence,
                row.amount_pence,
                row.status,
                csv_safe(row.resident.first_name),
                csv_safe(row.staff.display_name if row.staff else ""),
                csv_safe(row.cancel_reason or ""),
            ]
        )
    name = f"redemptions-partner-{partner.id}.csv"
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def csv_safe(value: str) -> str:
    """Text a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def till_user_key() -> str:
    """Rate-limit key of the till page: the signed-in member of staff."""
    return f"till-page:{current_user.get_id() if current_user.is_authenticated else ''}"


@partners_bp.route("/business/<int:partner_id>/till", methods=["GET", "POST"])
@allows_camera
@limiter.limit(
    CODE_GUESS_LIMIT, methods=["POST"], key_func=till_user_key, deduct_when=failed_code_lookup
)
@roles_required(*STAFF)
def till(partner_id: int):
    """The till: scan or type the customer's code, see what they can have, confirm."""
    partner = staff_partner(partner_id)
    form = TillCodeForm()
    if form.validate_on_submit():
        try:
            check = operations.check_code_at(current_user, partner, form.code.data)
        except DomainError as error:
            g.code_refused = error.code in operations.CODE_REFUSALS
            show_error(form, error)
            form.code.errors = [error.message]
        else:
            confirm = TillConfirmForm(formdata=None)
            confirm.code.data = form.code.data
            confirm.idempotency_key.data = secrets.token_urlsafe(16)
            confirm.offer_id.choices = [
                (o.id, f"{o.title} – {o.credit_cost} credit{'s' if o.credit_cost != 1 else ''}")
                for o in check.offers
            ]
            return render_template(
                "partners/till_confirm.html", partner=partner, check=check, form=confirm
            )
    return render_template("partners/till.html", partner=partner, form=form), status_of(form)


@partners_bp.post("/business/<int:partner_id>/till/confirm")
@allows_camera
@roles_required(*STAFF)
def till_confirm(partner_id: int):
    """Take the credits for the chosen offer and show the receipt."""
    partner = staff_partner(partner_id)
    form = TillConfirmForm()
    offers_here = db.session.execute(
        select(Offer).where(Offer.partner_id == partner.id).order_by(Offer.credit_cost)
    ).scalars()
    form.offer_id.choices = [(o.id, o.title) for o in offers_here]
    if form.validate_on_submit():
        try:
            redemption, _created = operations.redeem(
                current_user,
                code=form.code.data,
                offer_id=form.offer_id.data,
                idempotency_key=form.idempotency_key.data,
            )
            db.session.commit()
        except IntegrityError:
            # This confirmation was sent twice at once: show the receipt of the first.
            db.session.rollback()
            redemption = operations.answer_again(
                current_user,
                code=form.code.data,
                offer_id=form.offer_id.data,
                idempotency_key=form.idempotency_key.data,
            )
        except DomainError as error:
            db.session.rollback()
            code_form = TillCodeForm(formdata=None)
            code_form.form_errors.append(error.message)
            code_form.code.errors = [error.message]
            return (
                render_template("partners/till.html", partner=partner, form=code_form),
                error.status,
            )
        return redirect(url_for("partners.receipt", partner_id=partner.id, rid=redemption.id))
    flash("Choose the offer the customer is having, then confirm.", "info")
    return redirect(url_for("partners.till", partner_id=partner.id))


@partners_bp.route("/business/<int:partner_id>/redemptions/<int:rid>", methods=["GET", "POST"])
@roles_required(*STAFF, *COUNCIL)
def receipt(partner_id: int, rid: int):
    """The receipt of one redemption; staff may cancel it within the window, council later."""
    partner = staff_partner(partner_id, council_may_view=True)
    redemption = db.get_or_404(Redemption, rid)
    if redemption.partner_id != partner.id:
        abort(404)
    form = ReasonForm()
    allowed = redemption.status == RedemptionStatus.COMPLETED.value and (
        current_user.has_role(*COUNCIL) or operations.can_cancel_at_till(redemption)
    )
    if request.method == "POST":
        if not allowed:
            abort(409)
        if form.validate_on_submit():
            try:
                operations.cancel_redemption(current_user, redemption, form.reason.data)
            except DomainError as error:
                show_error(form, error)
            else:
                db.session.commit()
                flash(f"Cancelled: {redemption.credits} credits given back.", "success")
                return redirect(url_for("partners.receipt", partner_id=partner.id, rid=rid))
    return (
        render_template(
            "partners/receipt.html",
            partner=partner,
            redemption=redemption,
            form=form,
            can_cancel=allowed,
            window_minutes=int(operations.cancel_window().total_seconds() // 60),
        ),
        status_of(form),
    )


def offer_fields(form: OfferForm) -> operations.OfferFields:
    return operations.OfferFields(
        title=form.title.data,
        description=form.description.data or "",
        credit_cost=form.credit_cost.data,
        valid_from=form.valid_from.data,
        valid_until=form.valid_until.data,
        days="".join(form.days.data or []),
        available_from=form.available_from.data,
        available_until=form.available_until.data,
        limit_per_resident=form.limit_per_resident.data,
        limit_period=form.limit_period.data,
        stock_total=form.stock_total.data,
    )


@partners_bp.get("/business/<int:partner_id>/offers")
@roles_required(*STAFF)
def manage_offers(partner_id: int):
    """A partner's offers, active and paused."""
    partner = staff_partner(partner_id)
    items = db.session.execute(
        select(Offer).where(Offer.partner_id == partner.id).order_by(Offer.status, Offer.title)
    ).scalars()
    return render_template(
        "partners/manage_offers.html", partner=partner, items=list(items), form=ConfirmForm()
    )


@partners_bp.route("/business/<int:partner_id>/offers/new", methods=["GET", "POST"])
@partners_bp.route("/business/<int:partner_id>/offers/<int:offer_id>", methods=["GET", "POST"])
@roles_required(*STAFF)
def edit_offer(partner_id: int, offer_id: int | None = None):
    """Add an offer, or change one."""
    partner = staff_partner(partner_id)
    offer = None
    if offer_id is not None:
        offer = db.get_or_404(Offer, offer_id)
        if offer.partner_id != partner.id:
            abort(404)
    form = OfferForm(obj=offer if request.method == "GET" else None)
    if request.method == "GET":
        form.days.data = list(offer.days) if offer else [str(d) for d in range(7)]
        if offer:
            form.available_from.data = (
                f"{offer.available_from:%H:%M}" if offer.available_from else ""
            )
            form.available_until.data = (
                f"{offer.available_until:%H:%M}" if offer.available_until else ""
            )
    if form.validate_on_submit():
        try:
            if offer is None:
                offer = operations.create_offer(current_user, partner, offer_fields(form))
            else:
                operations.update_offer(current_user, offer, offer_fields(form))
        except DomainError as error:
            show_error(form, error)
        else:
            db.session.commit()
            flash(f"Offer saved: {offer.title}.", "success")
            return redirect(url_for("partners.manage_offers", partner_id=partner.id))
    return (
        render_template("partners/offer_form.html", partner=partner, offer=offer, form=form),
        status_of(form),
    )


@partners_bp.post("/business/<int:partner_id>/offers/<int:offer_id>/<any(pause,resume):action>")
@roles_required(*STAFF)
def offer_status(partner_id: int, offer_id: int, action: str):
    """Pause an offer, or make it active again."""
    partner = staff_partner(partner_id)
    offer = db.get_or_404(Offer, offer_id)
    if offer.partner_id != partner.id or not ConfirmForm().validate_on_submit():
        abort(400)
    status = OfferStatus.PAUSED if action == "pause" else OfferStatus.ACTIVE
    operations.set_offer_status(current_user, offer, status)
    db.session.commit()
    flash(f"{offer.title} is {'paused' if action == 'pause' else 'active again'}.", "success")
    return redirect(url_for("partners.manage_offers", partner_id=partner.id))


@partners_bp.route("/business/<int:partner_id>/staff", methods=["GET", "POST"])
@roles_required(*STAFF)
def staff(partner_id: int):
    """Who works here, and adding a colleague (how the business is paid: settlement.payouts)."""
    partner = staff_partner(partner_id)
    form = AddStaffForm()
    if form.validate_on_submit():
        try:
            added = operations.invite_staff(current_user, partner, form.email.data)
        except DomainError as error:
            show_error(form, error)
            form.email.errors = [error.message]
        else:
            db.session.commit()
            if isinstance(added, Invitation):
                flash(
                    f"{added.email} has no account yet: we have emailed them an invitation. "
                    "They can use the till once they create an account with that address.",
                    "success",
                )
            else:
                flash(f"{added.user.display_name} can now use the till.", "success")
            return redirect(url_for("partners.staff", partner_id=partner.id))
    people = db.session.execute(
        select(PartnerMembership).where(PartnerMembership.partner_id == partner.id)
    ).scalars()
    return (
        render_template(
            "partners/staff.html",
            partner=partner,
            people=list(people),
            form=form,
            invitations=pending_invitations(operations.STAFF_INVITATION.name, partner.id),
            revoke_form=RevokeInvitationForm(),
        ),
        status_of(form),
    )


# --- council staff: the approval queue ------------------------------------------------------


@partners_bp.get("/council/partners")
@roles_required(*COUNCIL)
def council_partners():
    """Partners waiting for approval first, then every partner by status."""
    rows = db.session.execute(
        select(Partner).order_by(Partner.status != PartnerStatus.PENDING.value, Partner.name)
    ).scalars()
    counts = dict(
        db.session.execute(
            select(Redemption.partner_id, func.count()).group_by(Redemption.partner_id)
        ).all()
    )
    return render_template("partners/council_partners.html", partners=list(rows), counts=counts)


@partners_bp.route("/council/partners/<int:partner_id>", methods=["GET", "POST"])
@roles_required(*COUNCIL)
def council_partner(partner_id: int):
    """Approve, reject, suspend or reinstate a partner; change its settlement rate."""
    partner = db.get_or_404(Partner, partner_id)
    approve = ConfirmForm(prefix="approve")
    refuse = ReasonForm(prefix="refuse")
    rate = SettlementRateForm(prefix="rate", settlement_rate_pence=partner.settlement_rate_pence)
    try:
        if approve.submit.data and approve.validate_on_submit():
            operations.decide_partner(current_user, partner, PartnerStatus.APPROVED)
            message = f"{partner.name} is approved."
        elif refuse.submit.data and refuse.validate_on_submit():
            status = (
                PartnerStatus.REJECTED
                if partner.status == PartnerStatus.PENDING.value
                else PartnerStatus.SUSPENDED
            )
            operations.decide_partner(current_user, partner, status, refuse.reason.data)
            message = f"{partner.name} is {status.value}."
        elif rate.submit.data and rate.validate_on_submit():
            operations.set_settlement_rate(current_user, partner, rate.settlement_rate_pence.data)
            message = f"Settlement rate of {partner.name} changed."
        else:
            message = None
    except DomainError as error:
        show_error(refuse if refuse.submit.data else rate, error)
        message = None
    if message:
        db.session.commit()
        flash(message, "success")
        return redirect(url_for("partners.council_partner", partner_id=partner.id))
    errors = approve.errors or refuse.errors or rate.errors
    return (
        render_template(
            "partners/council_partner.html",
            partner=partner,
            approve=approve,
            refuse=refuse,
            rate=rate,
            people=partner.memberships,
        ),
        400 if errors else 200,
    )
