"""Test fixtures: an app on SQLite (or PostgreSQL when DATABASE_URL says so), clean tables
for every test, users of any role, and a JSON API client.

Under ``CI=true`` a test that needs PostgreSQL, Redis or Chromium fails instead of skipping.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import create_app
from core.config import normalise_database_url
from core.extensions import db, limiter
from core.models import Role

CI = os.environ.get("CI") == "true"
BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = BASE_DATABASE_URL.startswith(("postgres://", "postgresql"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
PASSWORD = "correct-horse-battery"


def need(what: str, available: bool, why: str) -> None:
    """Skip a test whose service is missing, or fail it under CI."""
    if available:
        return
    message = f"needs {what}: {why}"
    if CI:
        pytest.fail(message + " (CI=true: services must be there)")
    pytest.skip(message)


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def postgres_url(database: str) -> str:
    """The PostgreSQL URL of DATABASE_URL with another database name."""
    url = make_url(normalise_database_url(BASE_DATABASE_URL))
    return url.set(database=database).render_as_string(hide_password=False)


def recreate_postgres_database(name: str) -> str:
    """Drop and create database ``name`` on the DATABASE_URL server; return its URL."""
    assert re.fullmatch(r"[a-z0-9_]+", name)
    admin = create_engine(
        postgres_url(make_url(normalise_database_url(BASE_DATABASE_URL)).database or "postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres_url(name)


def drop_postgres_database(name: str) -> None:
    admin = create_engine(
        postgres_url(make_url(normalise_database_url(BASE_DATABASE_URL)).database or "postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """A database of this test worker's own, empty."""
    if ON_POSTGRES:
        name = f"civic_test_{worker_id()}_{os.getpid()}"
        yield recreate_postgres_database(name)
        drop_postgres_database(name)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"


def app_settings(database_url: str, **overrides) -> dict:
    """The configuration every test app starts from."""
    settings = {
        "TESTING": True,
        "CIVIC_CREDITS_ENV": "test",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "SESSION_COOKIE_SECURE": False,
        "MAIL_SERVER": "",
    }
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def app(database_url):
    """The application under test, with the schema made from the models."""
    app = create_app(app_settings(database_url))
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def clean_state(request):
    """Empty every table and forget rate-limit counts after each test."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    # A test that made another app also made its Celery app the default: give it back.
    app.extensions["celery"].set_default()
    app.extensions["celery"].set_current()
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(db.metadata.sorted_tables):
                    conn.execute(table.delete())
        limiter.reset()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class MadeUser:
    """What a test needs to know of a user it made."""

    id: int
    email: str
    password: str
    display_name: str


@pytest.fixture
def create_user(app):
    """``create_user(*roles, email=..., password=...)`` makes and commits a user."""
    from werkzeug.security import generate_password_hash

    from core.models import RoleMembership, User

    counter = iter(range(1, 1_000_000))

    def make(*roles: Role, email: str | None = None, password: str = PASSWORD, name=None):
        roles = roles or (Role.RESIDENT,)
        email = email or f"user{next(counter)}@example.org"
        with app.app_context():
            user = User(
                email=email,
                password_hash=generate_password_hash(password, method="pbkdf2:sha256:1000"),
                display_name=name or email.split("@")[0].title(),
                postcode="LS8 2HE",
            )
            user.memberships = [RoleMembership(role=r.value) for r in roles]
            db.session.add(user)
            db.session.commit()
            made = MadeUser(user.id, email, password, user.display_name)
            db.session.remove()
        return made

    return make


class ApiClient:
    """JSON calls to the API with an optional bearer token."""

    def __init__(self, client):
        self.client = client

    def token(self, user: MadeUser) -> str:
        response = self.client.post(
            "/api/v1/auth/token", json={"email": user.email, "password": user.password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path, token=None, **kwargs):
        return self.call("GET", path, token, **kwargs)

    def post(self, path, token=None, **kwargs):
        return self.call("POST", path, token, **kwargs)


@pytest.fixture
def api(client):
    return ApiClient(client)


def csrf_token_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token"[^>]*value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def post_form(client, url: str, data: dict, page: str | None = None):
    """GET the page holding the form, then POST ``data`` with its CSRF token."""
    html = client.get(page or url).get_data(as_text=True)
    return client.post(url, data={**data, "csrf_token": csrf_token_from(html)})


def sign_in(client, user: MadeUser):
    """Sign ``user`` in through the sign-in form."""
    response = post_form(client, "/sign-in", {"email": user.email, "password": user.password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


@pytest.fixture
def postgres_required():
    need("PostgreSQL", ON_POSTGRES, "set DATABASE_URL to a PostgreSQL database")


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def redis_url():
    need("Redis", redis_available(), f"no Redis at {REDIS_URL}")
    number = int(re.sub(r"\D", "", worker_id()) or 0) + 2
    return f"{REDIS_URL}/{number}"


@pytest.fixture
def make_app(app, database_url):
    """``make_app(**settings)``: another app on the test database (e.g. production-like).

    Extensions are singletons, so the main test app is bound again afterwards.
    """

    made = []

    def make(**overrides):
        made.append(create_app(app_settings(database_url, **overrides)))
        return made[-1]

    yield make
    for other in made:  # close their connections now, not whenever garbage is collected
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
    limiter.init_app(app)
    app.extensions["celery"].set_default()
    app.extensions["celery"].set_current()


def pytest_collection_modifyitems(config, items):
    """A test that asks for PostgreSQL is marked ``postgres``, so a SQLite run can leave it out."""
    for item in items:
        if "postgres_required" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
