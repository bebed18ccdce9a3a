"""The app with bearer authentication in one query: what the benchmark says it would give.

Not used by the app. ``core.security.bearer_user`` loads the token with its user (one
query), then the user's roles (a second, ``selectin``) on every API call. This variant
loads all three in one query, with the same checks, so the check-in benchmark can show
the foundation's owners what the change is worth:

    .venv/bin/python bench/checkin_bench.py --app bench.checkin_auth_variant:app
"""

from __future__ import annotations

from flask import g, request
from sqlalchemy.orm import joinedload

import core.security as security
from core.errors import AuthenticationError
from core.extensions import db
from core.models import ApiToken, User
from core.timeutil import utcnow


def bearer_user():
    """``core.security.bearer_user`` with the token, user and roles in one query."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Send a bearer token.", code="unauthenticated")
    row = (
        db.session.execute(
            db.select(ApiToken)
            .options(joinedload(ApiToken.user).joinedload(User.memberships))
            .where(ApiToken.token_digest == security.token_digest(token.strip()))
        )
        .unique()
        .scalar_one_or_none()
    )
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("This token is not valid. Ask for a new one.", "invalid_token")
    if row.expires_at <= utcnow():
        raise AuthenticationError("This token has expired. Ask for a new one.", "token_expired")
    if not row.user.is_active:
        raise AuthenticationError("This account is suspended.", "account_suspended")
    g.api_token = row
    return row.user


security.bearer_user = bearer_user

from core import create_app  # noqa: E402 - after the patch, as the app's views see it

app = create_app()
