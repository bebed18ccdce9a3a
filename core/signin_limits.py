"""Throttling of failed sign-ins, per account and per client address (Flask-Limiter).

Only failed attempts count (``deduct_when``), so a person who types their password right is
never locked out by their own successes. Storage is Redis when ``RATELIMIT_STORAGE_URI`` is
set, memory otherwise.
"""

from __future__ import annotations

from flask import current_app, g, request


def ip_limit() -> str:
    return current_app.config["SIGNIN_LIMIT_PER_IP"]


def account_limit() -> str:
    return current_app.config["SIGNIN_LIMIT_PER_ACCOUNT"]


def account_limit_key() -> str:
    """The account being tried: the email from the JSON body or the form, lower-cased."""
    body = request.get_json(silent=True) if request.is_json else None
    email = body.get("email") if isinstance(body, dict) else request.form.get("email")
    return "signin-account:" + (email.strip().lower() if isinstance(email, str) else "")


def failed_attempt(response) -> bool:
    """Count the attempt only when the credentials were refused."""
    return bool(g.get("signin_failed"))
