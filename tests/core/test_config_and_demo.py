"""Configuration safety in production, and the demo data loader."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import create_app
from core.config import ConfigurationError
from core.extensions import db
from core.models import Role, User
from tests.conftest import app_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("secret", ["", "dev", "changeme", "short-but-random-Zq9"])
def test_production_refuses_a_missing_or_weak_secret_key(database_url, secret):
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app(app_settings(database_url, CIVIC_CREDITS_ENV="production", SECRET_KEY=secret))


#: What a production test app is allowed to run without (it uses the test database).
ALLOWED_IN_TESTS = {"ALLOW_SQLITE": True, "ALLOW_MEMORY_RATELIMIT": True, "ALLOW_NO_MAIL": True}


def test_production_starts_with_a_strong_secret_key(make_app):
    app = make_app(
        CIVIC_CREDITS_ENV="production",
        SECRET_KEY="k" * 20 + "Zq9-long-random-value",
        SESSION_COOKIE_SECURE=None,
        **ALLOWED_IN_TESTS,
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True


def run_flask(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, "CELERY_BROKER_URL": "memory://", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_environment_variables_override_defaults(monkeypatch, make_app):
    monkeypatch.setenv("SCHEME_NAME", "Leeds Time Credits")
    monkeypatch.setenv("CIVIC_CREDITS_API_TOKEN_TTL_HOURS", "2")
    app = make_app()
    assert app.config["SCHEME_NAME"] == "Leeds Time Credits"
    assert app.config["API_TOKEN_TTL_HOURS"] == 2
    assert "Leeds Time Credits" in app.test_client().get("/").get_data(as_text=True)


def test_postgresql_pool_keeps_a_connection_per_thread_and_can_be_sized(monkeypatch, make_app):
    url = "postgresql://postgres@127.0.0.1:5432/not-connected-to"
    options = make_app(DATABASE_URL=url).config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (options["pool_size"], options["max_overflow"], options["pool_pre_ping"]) == (
        10,
        10,
        False,
    )
    monkeypatch.setenv("CIVIC_CREDITS_DATABASE_POOL_SIZE", "24")
    options = make_app(DATABASE_URL=url).config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 24


def test_demo_loader_is_refused_in_production(tmp_path):
    url = f"sqlite:///{tmp_path / 'prod.sqlite'}"
    result = run_flask(
        "demo",
        "load",
        DATABASE_URL=url,
        CIVIC_CREDITS_ENV="production",
        SECRET_KEY="a-strong-production-secret-of-good-length-123",
        CIVIC_CREDITS_ALLOW_SQLITE="true",
        CIVIC_CREDITS_ALLOW_MEMORY_RATELIMIT="true",
        CIVIC_CREDITS_ALLOW_NO_MAIL="true",
    )
    assert result.returncode != 0
    assert "production" in result.stderr
    assert "demo" in result.stderr.lower()


def test_demo_load_creates_the_five_logins_and_is_idempotent(app, api):
    from core.demo import load_demo_data

    for _ in range(2):
        with app.app_context():
            load_demo_data()
            db.session.commit()
    with app.app_context():
        users = {u.email: u.roles for u in db.session.query(User).all()}
    assert users["resident@example.org"] >= {Role.RESIDENT}
    assert users["organiser@example.org"] >= {Role.ORGANISER}
    assert users["partner@example.org"] >= {Role.PARTNER_STAFF}
    assert users["council@example.org"] >= {Role.COUNCIL}
    assert users["admin@example.org"] >= {Role.ADMIN}
    for email in users:
        if not email.endswith("@example.org") or email.split("@")[0] not in {
            "resident",
            "organiser",
            "partner",
            "council",
            "admin",
        }:
            continue
        response = api.post(
            "/api/v1/auth/token", json={"email": email, "password": "demo-password"}
        )
        assert response.status_code == 200, email


def test_the_limiters_pass_before_every_request_stays_when_default_limits_are_set(app, make_app):
    from core.extensions import limiter

    assert limiter._check_request_limit not in app.before_request_funcs[None]
    try:
        limited = make_app(RATELIMIT_DEFAULT="100 per minute")
        assert limiter._check_request_limit in limited.before_request_funcs[None]
    finally:
        limiter.limit_manager.set_default_limits([])  # the limiter is one for all apps
