"""Configuration: safe defaults in code, overridden by environment variables.

Every setting below can be set in the environment under the same name (``DATABASE_URL``,
``SECRET_KEY``...), or with the ``CIVIC_CREDITS_`` prefix, which Flask's
``from_prefixed_env`` parses as JSON where it can (``CIVIC_CREDITS_CREDIT_VALIDITY_DAYS=180``).
The README documents them as a table.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Values that must never be used as a production secret.
WEAK_SECRETS = {"", "dev", "changeme", "secret", "development-only-secret-key"}
MIN_SECRET_LENGTH = 32

#: Settings read from plain (unprefixed) environment variables, as deployers expect.
PLAIN_ENV_SETTINGS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "RATELIMIT_STORAGE_URI",
    "SCHEME_NAME",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_DEFAULT_SENDER",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
)


class ConfigurationError(RuntimeError):
    """Start-up refused because the configuration is unsafe or incomplete."""


def default_config(instance_path: str) -> dict:
    """The embedded defaults: SQLite and a serverless broker in ``instance/``."""
    instance = Path(instance_path)
    return {
        "CIVIC_CREDITS_ENV": "development",
        "SECRET_KEY": "development-only-secret-key",
        "SCHEME_NAME": "Civic Credits",
        # Where users of this deployment can get its source (AGPL-3.0 section 13: a deployment
        # that changes the code must offer its users the changed source); shown in the footer.
        "SOURCE_CODE_URL": "",
        "DATABASE_URL": f"sqlite:///{instance / 'civic_credits.sqlite'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{instance / 'celery-broker.sqlite'}",
        "CELERY_BEAT_SCHEDULE_FILE": str(instance / "celerybeat-schedule"),
        "RATELIMIT_STORAGE_URI": "memory://",
        "DATABASE_POOL_PRE_PING": False,
        # Connections each web process keeps open to PostgreSQL: at least its threads, so a
        # busy process does not open and close a connection per request.
        "DATABASE_POOL_SIZE": 10,
        "DATABASE_MAX_OVERFLOW": 10,
        # Sign-in throttling: failed attempts per account and per client address.
        "SIGNIN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
        "SIGNIN_LIMIT_PER_IP": "30 per 15 minutes",
        "API_TOKEN_TTL_HOURS": 24,
        "LOGIN_SESSION_TTL_HOURS": 12,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": None,  # decided in finalise(): True unless development/debug
        "WTF_CSRF_TIME_LIMIT": 3600,
        # Reverse proxies in front of the app whose X-Forwarded-* headers are believed
        # (CIVIC_CREDITS_TRUSTED_PROXIES): 0 when clients connect to gunicorn directly.
        "TRUSTED_PROXIES": 0,
        "MAIL_SERVER": "",
        "MAIL_PORT": 25,
        "MAIL_DEFAULT_SENDER": "civic-credits@localhost",
        "STRIPE_SECRET_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        "STRIPE_API_BASE": "",
        "API_TITLE": "Civic Credits API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "JSON_SORT_KEYS": False,
        # Credits (rewards/): an earned lot expires this many days after it is earned.
        "CREDIT_VALIDITY_DAYS": 365,
        # Volunteering (volunteering/): lists organisers choose from, and the claim rules.
        "VOLUNTEERING_CATEGORIES": [
            "Environment",
            "Food and lunch clubs",
            "Gardening",
            "Health and wellbeing",
            "Older people",
            "Children and young people",
            "Sport and leisure",
            "Arts and culture",
            "Community support",
        ],
        "VOLUNTEERING_WARDS": [
            "City and Hunslet",
            "Chapel Allerton",
            "Gipton and Harehills",
            "Headingley and Hyde Park",
            "Killingbeck and Seacroft",
            "Roundhay",
        ],
        # A rotating check-in QR token is valid this many seconds.
        "CHECKIN_TOKEN_TTL_SECONDS": 60,
        # Check-in opens this many minutes before a session starts.
        "CHECKIN_OPENS_MINUTES_BEFORE": 15,
        # Minutes after the scheduled end that still count (and still accept scans).
        "CHECKIN_GRACE_MINUTES": 15,
        # A resident who scanned but had to sign in first has this long to finish.
        "CHECKIN_SIGN_IN_MINUTES": 15,
        # Credits = minutes x credits per hour / 60, rounded by: half_up, down or up.
        "CREDIT_ROUNDING": "half_up",
        # Claims above these wait for council approval even when nothing is flagged.
        "CLAIM_AUTO_APPROVE_MAX_MINUTES": 240,
        "CLAIM_AUTO_APPROVE_MAX_CREDITS": 8,
        # More than this many hours given in one day flags the claim.
        "CLAIM_DAILY_MAX_HOURS": 8,
        # Attendances still open this many hours after the session end are closed and flagged.
        "MISSED_CHECKOUT_AFTER_HOURS": 2,
        # Partners (partners/): what the scheme pays a new partner per credit, in pence
        # (council staff can change it per partner), how long a resident's one-time spending
        # code works, and how long partner staff may cancel a redemption themselves.
        "PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE": 100,
        "REDEMPTION_CODE_VALIDITY_SECONDS": 300,
        "REDEMPTION_CANCEL_WINDOW_MINUTES": 15,
        # Old codes are deleted by the nightly purge (partners.tasks.purge_redemption_codes)
        # this many days after they expired, this many per commit; a code a redemption
        # points at is kept.
        "REDEMPTION_CODE_RETENTION_DAYS": 7,
        "REDEMPTION_CODE_PURGE_BATCH_SIZE": 1000,
        # Invitations (core/invitations.py) of people without an account to organise for a
        # group or work for a partner: they work this many days, and are deleted this many
        # days after they expired, were revoked or were accepted (core.tasks.purge_invitations).
        "INVITATION_VALIDITY_DAYS": 14,
        "INVITATION_RETENTION_DAYS": 30,
        # Expiry (rewards/expiry.py): lots are expired this many days after their date,
        # in batches of this many lots per commit; residents are reminded these many days
        # before credits expire (once per lot and threshold).
        "CREDIT_EXPIRY_GRACE_DAYS": 0,
        "CREDIT_EXPIRY_BATCH_SIZE": 2000,
        "CREDIT_EXPIRY_REMINDER_DAYS": [30, 7],
        # Settlement (partners/settlement.py): the period length in days (weekly, periods
        # start on Mondays 00:00 UTC), the default budget per period in pence (None = no
        # cap; council can set one per period), and how failed payouts are retried.
        "SETTLEMENT_PERIOD_DAYS": 7,
        "SETTLEMENT_BUDGET_PENCE": None,
        "SETTLEMENT_MAX_ATTEMPTS": 5,
        "SETTLEMENT_RETRY_BASE_SECONDS": 60,
        "STRIPE_CURRENCY": "gbp",
        "STRIPE_WEBHOOK_TOLERANCE_SECONDS": 300,
    }


def load_config(app, test_config: dict | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment, then ``test_config``."""
    app.config.from_mapping(default_config(app.instance_path))
    for name in PLAIN_ENV_SETTINGS:
        if os.environ.get(name):
            app.config[name] = os.environ[name]
    app.config.from_prefixed_env("CIVIC_CREDITS")
    if os.environ.get("CIVIC_CREDITS_ENV"):
        app.config["CIVIC_CREDITS_ENV"] = os.environ["CIVIC_CREDITS_ENV"]
    if test_config:
        app.config.update(test_config)
    finalise(app)


def finalise(app) -> None:
    """Derive dependent settings and refuse unsafe production start-up."""
    config = app.config
    config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(config["DATABASE_URL"])
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Several threads (the dev server, tests) share a file database: wait for locks.
        config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("connect_args", {"timeout": 30})
    else:
        # A ping costs a round trip on every checkout (every request); recycling connections
        # after a few minutes covers a restarted server without it. DATABASE_POOL_PRE_PING
        # turns it back on where connections die often (a flaky network, a proxy).
        engine_options = config["SQLALCHEMY_ENGINE_OPTIONS"]
        engine_options.setdefault("pool_pre_ping", bool(config.get("DATABASE_POOL_PRE_PING")))
        engine_options.setdefault("pool_recycle", 300)
        engine_options.setdefault("pool_size", int(config["DATABASE_POOL_SIZE"]))
        engine_options.setdefault("max_overflow", int(config["DATABASE_MAX_OVERFLOW"]))
    development = config["CIVIC_CREDITS_ENV"] == "development" or app.debug
    if config["SESSION_COOKIE_SECURE"] is None:
        config["SESSION_COOKIE_SECURE"] = not development
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]
    config["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    config["RATELIMIT_STORAGE_URI"] = config["RATELIMIT_STORAGE_URI"] or "memory://"
    config["CELERY"] = celery_settings(config)
    if is_production(app):
        check_production_secret(config.get("SECRET_KEY"))
        check_production_services(config)


def is_production(app) -> bool:
    """True when the deployment says it is production."""
    return app.config.get("CIVIC_CREDITS_ENV") == "production"


def check_production_secret(secret: str | None) -> None:
    """Refuse a missing, well-known or short SECRET_KEY."""
    if not secret or secret in WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            "SECRET_KEY is missing or weak: in production set SECRET_KEY to a random value "
            f"of at least {MIN_SECRET_LENGTH} characters "
            '(python -c "import secrets; print(secrets.token_urlsafe(48))").'
        )


#: What a production deployment must not run on unless it says so: (refused when, the
#: setting that allows it, why).
PRODUCTION_REFUSALS = (
    (
        lambda config: config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"),
        "ALLOW_SQLITE",
        "DATABASE_URL is SQLite, which serialises every write and is lost with the container: "
        "set DATABASE_URL to PostgreSQL",
    ),
    (
        lambda config: config["RATELIMIT_STORAGE_URI"].startswith("memory://"),
        "ALLOW_MEMORY_RATELIMIT",
        "RATELIMIT_STORAGE_URI is memory://, so each web process counts sign-in attempts "
        "apart and a restart forgets them: set it to Redis (redis://127.0.0.1:6379/1)",
    ),
    (
        lambda config: not config.get("MAIL_SERVER"),
        "ALLOW_NO_MAIL",
        "MAIL_SERVER is not set, so no email (invitations, reminders) can be sent: set MAIL_SERVER",
    ),
)


def check_production_services(config) -> None:
    """Refuse SQLite, per-process rate limits and no mail server, each unless allowed."""
    for refused, allowed_by, why in PRODUCTION_REFUSALS:
        if refused(config) and not is_true(config.get(allowed_by)):
            raise ConfigurationError(
                f"{why}; or, to run in production without it, set CIVIC_CREDITS_{allowed_by}=true."
            )


def is_true(value) -> bool:
    """A setting that may come from the environment as a string."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs given in the common short forms."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def celery_settings(config) -> dict:
    """Celery's configuration, derived from ours (see core/celery_app.py)."""
    from core.celery_app import BEAT_SCHEDULE

    broker = config["CELERY_BROKER_URL"]
    return {
        "broker_url": broker,
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "beat_schedule": BEAT_SCHEDULE,
        "beat_schedule_filename": config["CELERY_BEAT_SCHEDULE_FILE"],
        "timezone": "UTC",
        "task_always_eager": bool(config.get("CELERY_TASK_ALWAYS_EAGER", False)),
    }
