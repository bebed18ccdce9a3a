"""Council administration pages: the audit log, people, scheme settings, and privacy.

Views parse, call an operation, commit once and render (STYLE.md); the operations live in
``core.admin``, ``core.settings`` and ``core.privacy``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, logout_user
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice

from core import admin, privacy, settings
from core.admin_forms import (
    AuditSearchForm,
    CloseAccountForm,
    RestoreForm,
    SuspendForm,
    UserAdminSearchForm,
    settings_form_class,
)
from core.errors import DomainError, InvalidRequest
from core.extensions import db
from core.models import Role, User
from core.security import roles_required
from core.timeutil import utcnow

admin_bp = Blueprint("admin", __name__)

COUNCIL = (Role.COUNCIL, Role.ADMIN)


def page_number() -> int:
    """The ``page`` query argument, 1 when missing or nonsense."""
    raw = request.args.get("page", "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


def pagination(page: int, total: int, size: int, endpoint: str, **kwargs) -> dict | None:
    """Parameters of govukPagination for a list of ``total`` rows in pages of ``size``."""
    pages = max(1, -(-total // size))
    if pages == 1:
        return None
    args = {k: v for k, v in request.args.items() if k != "page" and v}

    def href(number: int) -> str:
        return url_for(endpoint, **kwargs) + "?" + urlencode({**args, "page": number})

    result: dict = {"items": []}
    if page > 1:
        result["previous"] = {"href": href(page - 1)}
    if page < pages:
        result["next"] = {"href": href(page + 1)}
    shown = sorted({1, pages, page - 1, page, page + 1} & set(range(1, pages + 1)))
    last = 0
    for number in shown:
        if number - last > 1:
            result["items"].append({"ellipsis": True})
        result["items"].append({"number": number, "href": href(number), "current": number == page})
        last = number
    result["landmarkLabel"] = "Pages"
    return result


# --- audit log --------------------------------------------------------------------------


@admin_bp.get("/council/audit")
@roles_required(*COUNCIL)
def audit_log():
    """Search and filter the audit trail: who did what, to what, when and why."""
    form = AuditSearchForm(request.args)
    filters = admin.AuditFilters()
    valid = form.validate()
    if valid:
        filters = admin.AuditFilters(
            actor=form.actor.data or "",
            action=form.action.data or "",
            subject=form.subject.data or "",
            date_from=getattr(form.date_from, "parsed", None),
            date_to=getattr(form.date_to, "parsed", None),
        )
    page = page_number()
    entries, total = admin.audit_page(filters, page) if valid else ([], 0)
    actors = {
        user.id: user
        for user in db.session.execute(
            select(User).where(User.id.in_({e.actor_id for e in entries if e.actor_id}))
        ).scalars()
    }
    return render_template(
        "admin/audit_log.html",
        form=form,
        entries=entries,
        actors=actors,
        total=total,
        page=page,
        pagination=pagination(page, total, admin.AUDIT_PAGE_SIZE, "admin.audit_log"),
        actions=admin.known_actions(),
    ), (200 if valid else 400)


# --- people -----------------------------------------------------------------------------


@admin_bp.get("/admin/users")
@roles_required(*COUNCIL)
def users():
    """Find people by email, name, postcode, role or state."""
    form = UserAdminSearchForm(request.args)
    form.role.choices = [SelectChoice("", "Any role")] + [
        SelectChoice(role.value, role.label) for role in Role
    ]
    page = page_number()
    found, total = [], 0
    valid = form.validate()
    if valid:
        query = admin.user_search_query(form.q.data or "", form.role.data or "", form.state.data)
        total = db.session.execute(
            select(func.count()).select_from(query.order_by(None).subquery())
        ).scalar_one()
        found = (
            db.session.execute(
                query.limit(admin.USER_PAGE_SIZE).offset((page - 1) * admin.USER_PAGE_SIZE)
            )
            .scalars()
            .all()
        )
    return render_template(
        "admin/users.html",
        form=form,
        users=found,
        total=total,
        pagination=pagination(page, total, admin.USER_PAGE_SIZE, "admin.users"),
    ), (200 if valid else 400)


@admin_bp.get("/admin/users/<int:user_id>")
@roles_required(*COUNCIL)
def user_detail(user_id: int):
    """One person: their roles, their activity in the scheme, and suspension."""
    return render_user(db.get_or_404(User, user_id), SuspendForm(), RestoreForm())


def render_user(user: User, suspend_form, restore_form, status: int = 200):
    from reports.queries import person_activity

    return render_template(
        "admin/user.html",
        user=user,
        activity=person_activity(user.id),
        audit=admin.recent_audit_about(user),
        suspend_form=suspend_form,
        restore_form=restore_form,
        may_manage=may_manage(user),
    ), status


def may_manage(user: User) -> bool:
    try:
        admin.check_may_manage(current_user, user)
    except DomainError:
        return False
    return user.closed_at is None


@admin_bp.post("/admin/users/<int:user_id>/suspend")
@roles_required(*COUNCIL)
def suspend_user(user_id: int):
    """Suspend the account: sign-in refused, sessions and API tokens revoked at once."""
    user = db.get_or_404(User, user_id)
    form = SuspendForm()
    if form.validate_on_submit():
        try:
            admin.suspend_user(current_user, user, form.reason.data)
        except DomainError as error:
            db.session.rollback()
            form.reason.errors = [error.message]
        else:
            db.session.commit()
            flash(f"{user.display_name}'s account is suspended.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_user(user, form, RestoreForm(formdata=None), 400)


@admin_bp.post("/admin/users/<int:user_id>/restore")
@roles_required(*COUNCIL)
def restore_user(user_id: int):
    """Lift a suspension."""
    user = db.get_or_404(User, user_id)
    form = RestoreForm()
    if form.validate_on_submit():
        try:
            admin.restore_user(current_user, user, form.reason.data)
        except DomainError as error:
            db.session.rollback()
            form.reason.errors = [error.message]
        else:
            db.session.commit()
            flash(f"{user.display_name}'s account is restored.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id))
    return render_user(user, SuspendForm(formdata=None), form, 400)


# --- scheme settings --------------------------------------------------------------------


@admin_bp.route("/admin/settings", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def scheme_settings():
    """Scheme rules an admin may change; every change is audited with old and new values."""
    form_class = settings_form_class(settings.SETTINGS)
    form = form_class()
    if request.method == "GET":
        for definition in settings.SETTINGS:
            getattr(form, definition.name).data = settings.format_value(
                definition, settings.get_setting(definition.name)
            )
    elif form.validate_on_submit():
        values, problems = {}, False
        for definition in settings.SETTINGS:
            field = getattr(form, definition.name)
            try:
                values[definition.name] = settings.parse_value(definition, field.data or "")
            except InvalidRequest as error:
                field.errors = list(field.errors) + [error.message]
                problems = True
        if not problems:
            changed = [
                name
                for name, value in values.items()
                if settings.set_setting(current_user, name, value, form.reason.data)
            ]
            db.session.commit()
            settings.apply_now()
            if changed:
                labels = ", ".join(settings.BY_NAME[name].label.lower() for name in changed)
                flash(f"Settings saved: {labels}.", "success")
            else:
                flash("Nothing was changed.", "info")
            return redirect(url_for("admin.scheme_settings"))
    saved = settings.saved_settings()
    groups: dict[str, list] = {}
    for definition in settings.SETTINGS:
        groups.setdefault(definition.group, []).append(definition)
    return render_template(
        "admin/settings.html",
        form=form,
        groups=groups,
        saved=saved,
        default_of=settings.configured_default,
        describe=settings.describe_value,
    ), (400 if form.errors else 200)


# --- your data (privacy) ----------------------------------------------------------------


@admin_bp.get("/account/data")
@roles_required()
def your_data():
    """What we hold about you, to download, and closing your account."""
    data = privacy.personal_data(current_user)
    counts = {section: len(rows) for section, rows in data.items()}
    return render_template("admin/your_data.html", counts=counts)


@admin_bp.get("/account/data.json")
@roles_required()
def your_data_json():
    """Everything held about you, as JSON."""
    body = privacy.as_json(privacy.personal_data(current_user))
    return download(body, "application/json", "json")


@admin_bp.get("/account/data.csv.zip")
@roles_required()
def your_data_csv():
    """Everything held about you, as CSV files in a ZIP."""
    body = privacy.as_csv_zip(privacy.personal_data(current_user))
    return download(body, "application/zip", "csv.zip")


def download(body, mimetype: str, extension: str) -> Response:
    name = f"civic-credits-your-data-{utcnow():%Y-%m-%d}.{extension}"
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@admin_bp.route("/account/close", methods=["GET", "POST"])
@roles_required()
def close_account():
    """Close your account: your personal details are removed for good."""
    form = CloseAccountForm()
    if form.validate_on_submit():
        try:
            privacy.close_account(current_user._get_current_object(), form.password.data)
        except InvalidRequest as error:
            db.session.rollback()
            form.password.errors = list(form.password.errors) + [error.message]
        except DomainError as error:
            db.session.rollback()
            abort(409, error.message)
        else:
            db.session.commit()
            logout_user()
            flash("Your account is closed and your personal details have been removed.", "success")
            return redirect(url_for("core.home"))
    return render_template("admin/close_account.html", form=form), (400 if form.errors else 200)
