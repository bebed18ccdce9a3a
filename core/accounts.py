"""Account operations: the only code that creates users, changes roles and signs people in.

Operations flush but never commit: the request (or CLI command) commits once at its end,
so a failure leaves nothing half-written.
"""

from __future__ import annotations

import re
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import func, update
from werkzeug.security import check_password_hash, generate_password_hash

from core.audit import record
from core.errors import AuthenticationError, ConflictError, DomainError, InvalidRequest
from core.extensions import db
from core.models import ApiToken, LoginSession, Role, RoleMembership, User
from core.security import new_secret_token, token_digest
from core.timeutil import utcnow

MIN_PASSWORD_LENGTH = 10
#: Passwords too common to allow, whatever their length.
COMMON_PASSWORDS = {
    "password123",
    "password1234",
    "qwertyuiop",
    "1234567890",
    "123456789a",
    "iloveyou12",
    "letmein123",
    "welcome123",
    "passw0rd12",
    "administrator",
    "abcdefghij",
    "0123456789",
}
#: UK postcodes (the shape the Royal Mail publishes), after removing spaces.
POSTCODE_RE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")


def normalise_email(raw: str) -> str:
    """A valid email address, lower-cased; raise ``InvalidRequest`` otherwise."""
    try:
        checked = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidRequest(
            "Enter an email address in the correct format, like name@example.org",
            {"email": [str(error)]},
        ) from None
    return checked.normalized.lower()


def normalise_postcode(raw: str) -> str:
    """A UK postcode in upper case with one space, e.g. ``LS8 2HE``."""
    compact = re.sub(r"\s+", "", (raw or "")).upper()
    match = POSTCODE_RE.match(compact)
    if not match:
        raise InvalidRequest(
            "Enter a real UK postcode, like LS8 2HE", {"postcode": ["Not a UK postcode."]}
        )
    return f"{match.group(1)} {match.group(2)}"


def check_password_strength(password: str, email: str = "") -> None:
    """Refuse short, common or guessable passwords with a reason."""
    problem = None
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        problem = f"Password must be at least {MIN_PASSWORD_LENGTH} characters long"
    elif len(password) > 256:
        problem = "Password must be 256 characters or fewer"
    elif password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        problem = "Choose a password that is harder to guess"
    elif email and email.split("@")[0].lower() in password.lower() and len(email) > 3:
        problem = "Password must not contain your email address"
    if problem:
        raise InvalidRequest(problem, {"password": [problem]})


def clean_display_name(raw: str) -> str:
    """A display name of 1 to 100 printable characters."""
    name = " ".join((raw or "").split())
    if not name or len(name) > 100:
        raise InvalidRequest(
            "Enter the name you would like to be called (up to 100 characters)",
            {"display_name": ["Enter a name of 1 to 100 characters."]},
        )
    return name


def find_user_by_email(email: str) -> User | None:
    """The user with this (case-insensitive) email, if any."""
    return db.session.execute(
        db.select(User).where(User.email == email.strip().lower())
    ).scalar_one_or_none()


def register_resident(email: str, password: str, display_name: str, postcode: str) -> User:
    """Create a resident account; ``email_taken`` (409) if the email is in use.

    Pending invitations to the address are accepted (``core.invitations``).
    """
    email = normalise_email(email)
    display_name = clean_display_name(display_name)
    postcode = normalise_postcode(postcode)
    check_password_strength(password, email)
    if find_user_by_email(email):
        raise ConflictError(
            "An account with this email address already exists. Sign in instead.",
            code="email_taken",
        )
    user = User(
        email=email,
        password_hash=generate_password_hash(password),
        display_name=display_name,
        postcode=postcode,
    )
    user.memberships.append(RoleMembership(role=Role.RESIDENT.value))
    db.session.add(user)
    db.session.flush()
    # What they were invited to while they had no account is theirs now (core.invitations).
    from core.invitations import accept_pending_for

    accept_pending_for(user)
    return user


def authenticate(email: str, password: str) -> User:
    """The user for these credentials, or ``invalid_credentials`` (401)."""
    user = find_user_by_email(email or "") if isinstance(email, str) else None
    if user is None:
        # Hash anyway so a missing account takes as long as a wrong password.
        check_password_hash(DUMMY_HASH, password or "")
        raise AuthenticationError("Email address or password is not right.", "invalid_credentials")
    if not check_password_hash(user.password_hash, password or ""):
        raise AuthenticationError("Email address or password is not right.", "invalid_credentials")
    if not user.is_active:
        raise AuthenticationError(
            "This account is suspended. Contact the council's scheme team.", "account_suspended"
        )
    return user


DUMMY_HASH = generate_password_hash("not-a-real-password-just-for-timing")


def start_login_session(user: User) -> LoginSession:
    """A new login session for a browser that just signed in."""
    hours = int(current_app.config["LOGIN_SESSION_TTL_HOURS"])
    login = LoginSession(
        id=new_secret_token(), user=user, expires_at=utcnow() + timedelta(hours=hours)
    )
    db.session.add(login)
    db.session.flush()
    user.login_session_id = login.id
    return login


def load_login_session(session_id: str) -> User | None:
    """The user of a live login session, or None when revoked, expired or suspended."""
    login = db.session.get(LoginSession, session_id)
    if login is None or login.revoked_at is not None or login.expires_at <= utcnow():
        return None
    if not login.user.is_active:
        return None
    login.user.login_session_id = login.id
    return login.user


def end_login_session(session_id: str | None) -> None:
    """Revoke one login session (sign-out)."""
    if session_id:
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def revoke_all_sessions(user: User, *, tokens: bool = False) -> None:
    """Revoke every login session of ``user`` (and API tokens if asked)."""
    now = utcnow()
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if tokens:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def change_password(user: User, current_password: str, new_password: str) -> None:
    """Change the password; every other session and token of the user stops working."""
    if not check_password_hash(user.password_hash, current_password or ""):
        raise InvalidRequest(
            "Your current password is not right",
            {"current_password": ["Your current password is not right"]},
        )
    check_password_strength(new_password, user.email)
    user.password_hash = generate_password_hash(new_password)
    revoke_all_sessions(user, tokens=True)
    record(user, "account.password_changed", f"user:{user.id}")


def grant_role(actor: User, user: User, role: Role) -> None:
    """Give ``user`` the role; their sessions are renewed so they sign in again."""
    if role in user.roles:
        raise ConflictError(f"{user.display_name} already has the role {role.label}.", "role_held")
    user.memberships.append(RoleMembership(role=role.value, granted_by_id=actor.id))
    revoke_all_sessions(user)
    record(actor, "role.granted", f"user:{user.id}", details={"role": role.value})
    db.session.flush()


def remove_role(actor: User, user: User, role: Role) -> None:
    """Take the role away; an admin cannot remove the last admin."""
    membership = next((m for m in user.memberships if m.role == role.value), None)
    if membership is None:
        raise ConflictError(
            f"{user.display_name} does not have the role {role.label}.", "role_not_held"
        )
    if role is Role.ADMIN and count_role_holders(Role.ADMIN) <= 1:
        raise DomainError("The scheme must keep at least one council admin.", "last_admin")
    user.memberships.remove(membership)
    revoke_all_sessions(user)
    record(actor, "role.removed", f"user:{user.id}", details={"role": role.value})
    db.session.flush()


def count_role_holders(role: Role) -> int:
    """How many people hold ``role``."""
    return db.session.execute(
        db.select(func.count()).select_from(RoleMembership).where(RoleMembership.role == role.value)
    ).scalar_one()


def issue_api_token(user: User) -> tuple[str, ApiToken]:
    """A new bearer token (returned once) and its stored row."""
    hours = int(current_app.config["API_TOKEN_TTL_HOURS"])
    token = new_secret_token()
    row = ApiToken(
        token_digest=token_digest(token), user=user, expires_at=utcnow() + timedelta(hours=hours)
    )
    db.session.add(row)
    db.session.flush()
    return token, row


def revoke_api_token(row: ApiToken) -> None:
    """Make a bearer token stop working."""
    row.revoked_at = utcnow()


def purge_expired_credentials(older_than: timedelta = timedelta(days=30)) -> int:
    """Delete login sessions and tokens that ended more than ``older_than`` ago."""
    cutoff = utcnow() - older_than
    removed = 0
    for model in (LoginSession, ApiToken):
        result = db.session.execute(
            db.delete(model).where((model.expires_at < cutoff) | (model.revoked_at < cutoff))
        )
        removed += result.rowcount or 0
    return removed
