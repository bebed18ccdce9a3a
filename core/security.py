"""Who may do what: role checks for pages and bearer-token authentication for the API."""

from __future__ import annotations

import hashlib
import secrets
from functools import wraps
from time import monotonic

from flask import abort, g, request
from flask_login import current_user, login_required
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from core.alone import execute_alone
from core.errors import AuthenticationError, ForbiddenError
from core.extensions import db
from core.models import ApiToken, Role, RoleMembership, User
from core.timeutil import utcnow


def token_digest(token: str) -> str:
    """The stored form of a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret_token() -> str:
    """A fresh random token (256 bits)."""
    return secrets.token_urlsafe(32)


def roles_required(*roles: Role):
    """Page decorator: signed in and holding one of ``roles`` (403 otherwise).

    With no roles, any signed-in person may see the page.
    """

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if roles and not current_user.has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_roles = roles
        return wrapped

    return decorator


def bearer_user(*, recent_ok: bool = False):
    """The user of the request's valid bearer token, or raise ``AuthenticationError``.

    With ``recent_ok``, a lookup this process made in the last ``RECENT_SECONDS`` may stand
    in for a new one: only for a view whose own statement checks the token again in the
    database, in the same round trip as its work (``api_auth(checked_in_statement=True)``).
    Until that check or a new lookup (``confirmed_api_user``) has passed, the request's
    ``g.api_unconfirmed`` holds the token's digest.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Send a bearer token: Authorization: Bearer <token> (POST /api/v1/auth/token).",
            code="unauthenticated",
        )
    digest = token_digest(token.strip())
    recent = _RECENT.get(digest) if recent_ok else None
    if recent is not None and monotonic() - recent[0] < RECENT_SECONDS:
        row = recent[1]
        g.api_unconfirmed = digest
    else:
        # One round trip, outside any transaction (core.alone): the token's state, its user
        # and the user's roles (as one string), read as plain columns; the user object is
        # made from them without the ORM's loading.
        rows = execute_alone(BEARER_QUERY, {"digest": digest})
        row = rows[0] if rows else None
        g.api_unconfirmed = None
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("This token is not valid. Ask for a new one.", "invalid_token")
    if row.expires_at <= utcnow():
        raise AuthenticationError("This token has expired. Ask for a new one.", "token_expired")
    if row.suspended_at is not None:
        raise AuthenticationError("This account is suspended.", "account_suspended")
    if g.api_unconfirmed is None:  # looked up now: remember it
        if len(_RECENT) >= RECENT_MAX:
            _RECENT.clear()
        _RECENT[digest] = (monotonic(), row)
    g.api_token_id = row.token_id
    return known_user(row, (row.roles or "").split(","))


#: Bearer lookups this process made lately (digest -> (when, row)); see ``bearer_user``.
_RECENT: dict[str, tuple[float, object]] = {}
RECENT_SECONDS = 30.0
RECENT_MAX = 10_000


def confirmed_api_user(*roles: Role) -> User:
    """The request's user, looked up afresh if it came from a recent lookup no statement has
    checked yet (401/403 as ``authorise``); call before anything the token must allow."""
    if g.get("api_unconfirmed"):
        user = g.pop("api_user", None)
        if user is not None and user in db.session:
            db.session.expunge(user)  # made from the recent row: made again from the new one
        g.api_unconfirmed = None
    return authorise(roles)


USERS = User.__table__
#: The bearer lookup, built once (hot path: every API request).
BEARER_QUERY = (
    db.select(
        *USERS.c,
        ApiToken.__table__.c.id.label("token_id"),
        ApiToken.__table__.c.expires_at,
        ApiToken.__table__.c.revoked_at,
        db.select(db.func.aggregate_strings(RoleMembership.__table__.c.role, ","))
        .where(RoleMembership.__table__.c.user_id == USERS.c.id)
        .scalar_subquery()
        .label("roles"),
    )
    .select_from(ApiToken.__table__.join(USERS, USERS.c.id == ApiToken.__table__.c.user_id))
    .where(ApiToken.__table__.c.token_digest == db.bindparam("digest"))
)


def known_user(row, roles) -> User:
    """The session's ``User`` for a row of ``users`` columns, made without a query: the one
    the session holds already, or a new object attached to it as loaded. ``roles`` stand in
    for its memberships until those are loaded or changed."""
    user = db.session.identity_map.get(identity_key(User, row.id))
    if user is None:
        user = User(**{column.key: getattr(row, column.key) for column in USERS.c})
        make_transient_to_detached(user)
        db.session.add(user)
    user.cache_roles(roles)
    return user


def authorise(roles: tuple[Role, ...], *, recent_ok: bool = False):
    """The request's user, holding one of ``roles`` if any are given (else 401/403)."""
    user = g.get("api_user") or bearer_user(recent_ok=recent_ok)
    g.api_user = user
    if roles and not user.has_role(*roles):
        raise ForbiddenError(
            "Your account does not have the role this needs: "
            + ", ".join(r.label for r in roles)
            + ".",
            code="forbidden",
        )
    return user


def api_auth(*roles: Role, checked_in_statement: bool = False):
    """API decorator: a valid bearer token and, if given, one of ``roles`` (403 otherwise).

    The check also runs before the body is parsed (``authorise_api_request``), so a caller
    without a valid token gets 401, and one without the role 403, whatever they sent.

    ``checked_in_statement``: the view's work is one statement that checks the token (its
    digest is ``g.api_unconfirmed``) in the database itself, and the view calls
    ``confirmed_api_user`` before doing anything else; a recent lookup of the token then
    saves a round trip (``bearer_user``).
    """

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            authorise(roles, recent_ok=checked_in_statement)
            return view(*args, **kwargs)

        wrapped.required_roles = roles
        wrapped.checked_in_statement = checked_in_statement
        return wrapped

    return decorator


def view_function_of(app, endpoint: str | None, method: str):
    """The function that will answer ``method`` on ``endpoint`` (MethodView aware)."""
    view = app.view_functions.get(endpoint) if endpoint else None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return getattr(view_class, method.lower(), None)
    return view


def authorise_api_request():
    """Before any API view runs: authenticate if the view is guarded by ``api_auth``."""
    from flask import current_app

    if not request.path.startswith("/api/"):
        return
    view = view_function_of(current_app, request.endpoint, request.method)
    roles = getattr(view, "required_roles", None)
    if roles is not None:
        authorise(roles, recent_ok=getattr(view, "checked_in_statement", False))
