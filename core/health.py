"""``GET /healthz``: is the app able to reach its database and its broker?"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from kombu import Connection
from sqlalchemy import text

from core.extensions import db

health_bp = Blueprint("health", __name__)


def database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        return True
    except Exception:  # any failure means "down"; the reason goes to the log
        current_app.logger.exception("health check: database unreachable")
        db.session.rollback()
        return False


def broker_ok() -> bool:
    try:
        with Connection(current_app.config["CELERY_BROKER_URL"], connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        current_app.logger.exception("health check: broker unreachable")
        return False


@health_bp.get("/healthz")
def healthz():
    """``{"status": "ok", "database": "ok", "broker": "ok"}``, or 503 naming what is down."""
    parts = {"database": database_ok(), "broker": broker_ok()}
    body = {"status": "ok" if all(parts.values()) else "unavailable"}
    body.update({name: "ok" if up else "down" for name, up in parts.items()})
    return jsonify(body), 200 if all(parts.values()) else 503
