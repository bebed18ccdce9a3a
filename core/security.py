"""Who may do what: role checks for pages and bearer-token authentication for the API."""

from __future__ import annotations

import hashlib
import secrets
from functools import wraps

from flask import abort, g, request
from flask_login import current_user, login_required

from core.errors import AuthenticationError, ForbiddenError
from core.extensions import db
from core.models import ApiToken, Role
from core.timeutil import utcnow


def token_digest(token: str) -> str:
    """The stored form of a bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret_token() -> str:
    """A fresh random token (256 bits)."""
    return secrets.token_urlsafe(32)


def roles_required(*roles: Role):
    """Page decorator: signed in and holding one of ``roles`` (403 otherwise)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if roles and not current_user.has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def bearer_user():
    """The user of the request's valid bearer token, or raise ``AuthenticationError``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Send a bearer token: Authorization: Bearer <token> (POST /api/v1/auth/token).",
            code="unauthenticated",
        )
    row = db.session.execute(
        db.select(ApiToken).where(ApiToken.token_digest == token_digest(token.strip()))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("This token is not valid. Ask for a new one.", "invalid_token")
    if row.expires_at <= utcnow():
        raise AuthenticationError("This token has expired. Ask for a new one.", "token_expired")
    if not row.user.is_active:
        raise AuthenticationError("This account is suspended.", "account_suspended")
    g.api_token = row
    return row.user


def api_auth(*roles: Role):
    """API decorator: a valid bearer token and, if given, one of ``roles`` (403 otherwise)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = bearer_user()
            if roles and not user.has_role(*roles):
                raise ForbiddenError(
                    "Your account does not have the role this needs: "
                    + ", ".join(r.label for r in roles)
                    + ".",
                    code="forbidden",
                )
            g.api_user = user
            return view(*args, **kwargs)

        return wrapped

    return decorator
