"""The kernel's pages: home, register, sign in and out, account, role admin, council, info."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy import func, or_

from core import accounts, invitations
from core.errors import DomainError, InvalidRequest
from core.extensions import db, limiter
from core.forms import (
    AcceptInvitationForm,
    ChangePasswordForm,
    RegisterForm,
    RevokeInvitationForm,
    RolesForm,
    SignInForm,
    SignOutForm,
    UserSearchForm,
)
from core.models import Role, RoleMembership, User
from core.security import roles_required
from core.signin_limits import account_limit, account_limit_key, failed_attempt, ip_limit

core_bp = Blueprint("core", __name__)


@core_bp.record_once
def declare_public_pages(state) -> None:
    """An invitation's page is public: the invited person may not have an account yet."""
    app = state.app
    app.public_endpoints = getattr(app, "public_endpoints", set()) | {"core.invitation"}


#: Whitespace, control characters and backslashes, plain or percent-encoded, and encoded
#: slashes: browsers drop tabs and newlines from a URL and read a backslash as a slash.
UNSAFE_IN_NEXT = re.compile(r"[\s\x00-\x1f\x7f\\]|%(?:[01][0-9a-f]|20|2f|5c|7f)", re.IGNORECASE)


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (to go to after sign-in), else None.

    ``/\t/evil.com`` or ``/\\evil.com`` would leave the site, so anything in
    ``UNSAFE_IN_NEXT`` is refused, as is anything but one leading slash with no scheme or host.
    """
    if not target or len(target) > 2000 or not target.startswith("/"):
        return None
    if target.startswith("//") or UNSAFE_IN_NEXT.search(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def field_errors_to_form(form, error: InvalidRequest) -> None:
    """Show an operation's field errors next to the form's fields."""
    for name in error.fields or {}:
        field = getattr(form, name, None)
        if field is not None:
            field.errors = list(field.errors) + [error.message]
            break
    else:
        form.form_errors.append(error.message)


def sign_in_user(user: User) -> None:
    """Start a fresh session for ``user``: nothing from before sign-in carries over."""
    session.clear()
    accounts.start_login_session(user)
    db.session.commit()
    login_user(user)


@core_bp.get("/")
def home():
    """The front page: what the scheme is and how to take part."""
    return render_template("core/home.html")


@core_bp.route("/register", methods=["GET", "POST"])
def register():
    """A resident creates an account."""
    if current_user.is_authenticated:
        return redirect(url_for("core.account"))
    form = RegisterForm()
    invitation = invitation_of_link(request.args.get("invitation"))
    if request.method == "GET" and invitation is not None and invitation.is_usable:
        form.email.data = invitation.email
    if form.validate_on_submit():
        try:
            user = accounts.register_resident(
                form.email.data, form.password.data, form.display_name.data, form.postcode.data
            )
        except InvalidRequest as error:
            db.session.rollback()
            field_errors_to_form(form, error)
        except DomainError as error:
            db.session.rollback()
            form.email.errors = list(form.email.errors) + [error.message]
        else:
            accepted = invitations.accepted_by(user)
            sign_in_user(user)
            flash("Your account has been created. Welcome!", "success")
            flash_accepted(accepted)
            if invitation is not None and not accepted:
                # Registered with another address: the link's page says who can accept it.
                return redirect(
                    url_for("core.invitation", invitation_token=request.args["invitation"])
                )
            return redirect(url_for("core.account"))
    return render_template("core/register.html", form=form), 200 if not form.errors else 400


@core_bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(ip_limit, methods=["POST"], deduct_when=failed_attempt)
@limiter.limit(
    account_limit, methods=["POST"], key_func=account_limit_key, deduct_when=failed_attempt
)
def sign_in():
    """Sign in with email and password."""
    form = SignInForm()
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data)
        except DomainError as error:
            g.signin_failed = True
            form.form_errors.append(error.message)
            form.email.errors = list(form.email.errors) + [error.message]
        else:
            accepted = invitations.accept_pending_for(user)
            sign_in_user(user)
            flash_accepted(accepted)
            return redirect(safe_next(request.args.get("next")) or url_for("core.account"))
    status = 401 if form.errors else 200
    return render_template("core/sign_in.html", form=form), status


@core_bp.post("/sign-out")
@roles_required()
def sign_out():
    """End this browser's session; a copy of its cookie stops working too."""
    form = SignOutForm()
    if not form.validate_on_submit():
        abort(400)
    accounts.end_login_session(current_user.login_session_id)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You have signed out.", "success")
    return redirect(url_for("core.home"))


@core_bp.route("/account", methods=["GET", "POST"])
@roles_required()
def account():
    """Your details and roles, and changing your password."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(
                current_user, form.current_password.data, form.new_password.data
            )
        except InvalidRequest as error:
            db.session.rollback()
            field_errors_to_form(form, error)
        else:
            # Every other session was revoked; this browser gets a fresh one.
            user = current_user._get_current_object()
            sign_in_user(user)
            flash("Your password has been changed. Other devices have been signed out.", "success")
            return redirect(url_for("core.account"))
    status = 400 if form.errors else 200
    return render_template("core/account.html", form=form, sign_out_form=SignOutForm()), status


@core_bp.get("/council")
@roles_required(Role.COUNCIL, Role.ADMIN)
def council():
    """The council's start page: the people in the scheme by role."""
    counts = dict(
        db.session.execute(
            db.select(RoleMembership.role, func.count()).group_by(RoleMembership.role)
        ).all()
    )
    return render_template("core/council.html", counts=counts, roles=list(Role))


@core_bp.get("/admin/roles")
@roles_required(Role.ADMIN)
def admin_roles():
    """Find people and see their roles."""
    form = UserSearchForm(request.args)
    query = db.select(User).order_by(User.email).limit(50)
    if form.validate() and form.q.data:
        term = f"%{form.q.data.strip().lower()}%"
        query = query.where(
            or_(func.lower(User.email).like(term), func.lower(User.display_name).like(term))
        )
    users = db.session.execute(query).scalars().all()
    return render_template("core/admin_roles.html", form=form, users=users)


@core_bp.route("/admin/roles/<int:user_id>", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def admin_user_roles(user_id: int):
    """Grant and remove one person's roles."""
    user = db.get_or_404(User, user_id)
    form = RolesForm()
    form.roles.choices = [(role.value, role.label) for role in Role]
    if request.method == "GET":
        form.roles.data = sorted(r.value for r in user.roles)
    elif form.validate_on_submit():
        wanted = {Role(value) for value in form.roles.data or []}
        try:
            for role in sorted(wanted - user.roles):
                accounts.grant_role(current_user, user, role)
            for role in sorted(user.roles - wanted):
                accounts.remove_role(current_user, user, role)
        except DomainError as error:
            db.session.rollback()
            form.roles.errors = [error.message]
        else:
            db.session.commit()
            flash(f"Roles saved for {user.display_name}.", "success")
            if user.id == current_user.id:
                return redirect(url_for("core.sign_in"))
            return redirect(url_for("core.admin_user_roles", user_id=user.id))
    status = 400 if form.errors else 200
    return render_template("core/admin_user_roles.html", form=form, user=user), status


@core_bp.get("/accessibility")
def accessibility():
    """The accessibility statement."""
    return render_template("core/accessibility.html")


@core_bp.get("/privacy")
def privacy():
    """The privacy notice."""
    return render_template("core/privacy.html")


# --- invitations (core.invitations) ---------------------------------------------------------


def invitation_of_link(token: str | None):
    """The invitation a link's token names, or None for no token or a wrong one."""
    if not token:
        return None
    try:
        return invitations.invitation_from_token(token)
    except DomainError:
        return None


def flash_accepted(accepted) -> None:
    """Tell the person what the invitations they just accepted made them."""
    for invitation in accepted:
        flash(invitations.describe_acceptance(invitation), "success")


@core_bp.get("/invitations/<invitation_token>")
def invitation(invitation_token: str):
    """An emailed invitation: who invited whom to what, and how to accept it."""
    invitation = invitations.invitation_from_token(invitation_token)
    kind = invitations.kind_of(invitation)
    return render_template(
        "core/invitation.html",
        invitation=invitation,
        kind=kind,
        target=kind.target_name(invitation.target_id) or "a group that no longer exists",
        token=invitation_token,
        form=AcceptInvitationForm(),
    )


@core_bp.post("/invitations/<invitation_token>/accept")
@roles_required()
def accept_invitation(invitation_token: str):
    """The signed-in person accepts the invitation of the link they followed."""
    if not AcceptInvitationForm().validate_on_submit():
        abort(400)
    invitation = invitations.invitation_from_token(invitation_token)
    user = current_user._get_current_object()
    try:
        invitations.accept(invitation, user)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("core.invitation", invitation_token=invitation_token))
    db.session.commit()
    flash_accepted([invitation])
    kind = invitations.kind_of(invitation)
    if kind.role not in user.roles:  # a partner not approved yet: the role comes then
        return redirect(url_for("core.account"))
    return redirect(kind.target_url(invitation.target_id))


@core_bp.post("/invitations/<int:invitation_id>/revoke")
@roles_required(Role.ORGANISER, Role.PARTNER_STAFF)
def revoke_invitation(invitation_id: int):
    """An organiser or member of staff withdraws a pending invitation of their group."""
    if not RevokeInvitationForm().validate_on_submit():
        abort(400)
    invitation = invitations.get_invitation(invitation_id)
    kind = invitations.kind_of(invitation)
    if not kind.may_manage(current_user, invitation.target_id):
        abort(403)
    try:
        invitations.revoke(current_user, invitation)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        flash(f"The invitation to {invitation.email} has been revoked.", "success")
    return redirect(kind.target_url(invitation.target_id))
