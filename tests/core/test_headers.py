"""Security headers (core/headers.py), trusted proxies, and what production refuses to start on."""

import re
from pathlib import Path

import pytest

from core import create_app
from core.config import ConfigurationError
from core.models import Role
from tests.conftest import app_settings, csrf_token_from, sign_in

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "a-strong-production-secret-of-good-length-123"


def csp_of(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in policy.split(";"))
        if part
    }


def assert_security_headers(response, camera="()"):
    csp = csp_of(response)
    assert csp["default-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert csp["style-src"] == "'self'"
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert re.fullmatch(r"'self' 'nonce-[A-Za-z0-9_-]{20,}'", csp["script-src"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    permissions = dict(
        part.strip().split("=", 1) for part in response.headers["Permissions-Policy"].split(",")
    )
    assert permissions["camera"] == camera
    assert permissions["microphone"] == "()" and permissions["geolocation"] == "()"
    return csp


def inline_script_nonces(html: str) -> list[str]:
    return re.findall(r"<script nonce=\"([^\"]+)\">", html)


def test_a_page_has_the_headers_and_its_inline_script_the_nonce(client):
    response = client.get("/")
    csp = assert_security_headers(response)
    nonce = csp["script-src"].split("'nonce-")[1].rstrip("'")
    assert inline_script_nonces(response.get_data(as_text=True)) == [nonce]
    # A fresh nonce each time.
    assert csp_of(client.get("/"))["script-src"] != csp["script-src"]


def test_an_api_answer_has_the_headers(api, create_user):
    token = api.token(create_user())
    response = api.get("/api/v1/me", token)
    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.parametrize(
    "path, status",
    [("/no-such-page", 404), ("/sign-in?next=%00", 400), ("/api/v1/no-such-thing", 404)],
)
def test_an_error_answer_has_the_headers(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    csp = assert_security_headers(response)
    if not path.startswith("/api/"):
        # The error page's inline script carries this answer's nonce, even when the request
        # was refused before the nonce hook ran.
        nonce = csp["script-src"].split("'nonce-")[1].rstrip("'")
        assert inline_script_nonces(response.get_data(as_text=True)) == [nonce]


def test_the_camera_is_allowed_only_on_the_pages_that_scan(app, client, create_user):
    from partners import operations as ops
    from partners.models import PartnerStatus

    staff = create_user(Role.PARTNER_STAFF)
    council = create_user(Role.COUNCIL)
    with app.app_context():
        from core.extensions import db
        from core.models import User

        partner = ops.register_partner(
            db.session.get(User, staff.id),
            name="The Corner Café",
            address="1 High Street, Leeds LS8 2HE",
            category="Café",
            ward="Roundhay",
        )
        ops.decide_partner(db.session.get(User, council.id), partner, PartnerStatus.APPROVED)
        db.session.commit()
        partner_id = partner.id
    sign_in(client, staff)
    till = client.get(f"/business/{partner_id}/till")
    assert till.status_code == 200
    assert_security_headers(till, camera="(self)")
    dashboard = client.get(f"/business/{partner_id}")
    assert dashboard.status_code == 200
    assert_security_headers(dashboard, camera="()")
    scanning = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if "(self)" in str(getattr(view, "talisman_view_options", {}).get("permissions_policy"))
    }
    assert scanning == {"partners.till", "partners.till_confirm", "volunteering.scan_cards"}


def test_hsts_outside_development_only(make_app):
    production = make_app(
        CIVIC_CREDITS_ENV="production",
        SECRET_KEY=STRONG_SECRET,
        ALLOW_SQLITE=True,
        ALLOW_MEMORY_RATELIMIT=True,
        MAIL_SERVER="127.0.0.1",
    )
    secure = production.test_client().get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    development = make_app(CIVIC_CREDITS_ENV="development")
    plain = development.test_client().get("/", base_url="https://localhost")
    assert "Strict-Transport-Security" not in plain.headers
    # Nothing is redirected to HTTPS here: the reverse proxy does that.
    assert production.test_client().get("/").status_code == 200


def test_no_template_has_an_inline_handler_or_style_attribute():
    """The CSP blocks both; a page using one would silently lose it."""
    problems = []
    for template in ROOT.glob("*/templates/**/*.html"):
        text = template.read_text()
        for match in re.finditer(r"\s(on[a-z]+|style)\s*=\s*[\"']", text):
            problems.append(f"{template.relative_to(ROOT)}: {match.group(1)}=")
    assert problems == []


def fail_sign_in(client, email, forwarded_for):
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    return client.post(
        "/sign-in",
        data={"email": email, "password": "wrong password", "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )


def sign_in_behind_proxy(client, user, forwarded_for):
    token = csrf_token_from(client.get("/sign-in").get_data(as_text=True))
    return client.post(
        "/sign-in",
        data={"email": user.email, "password": user.password, "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )


@pytest.mark.parametrize("hops, fourth_signs_in", [(1, True), (0, False)])
def test_clients_behind_one_proxy_are_limited_apart(make_app, create_user, hops, fourth_signs_in):
    """Three strangers' wrong passwords do not lock a fourth resident out, with one trusted
    proxy; without it (the proxy's own address for everyone) they do, as before."""
    app = make_app(TRUSTED_PROXIES=hops, SIGNIN_LIMIT_PER_IP="3 per 15 minutes")
    client = app.test_client()
    for number in range(3):
        stranger = fail_sign_in(client, f"stranger{number}@example.org", f"203.0.113.{number}")
        assert stranger.status_code == 401
    resident = create_user()
    answer = sign_in_behind_proxy(client, resident, "198.51.100.7")
    assert answer.status_code == (302 if fourth_signs_in else 429)


def test_a_trusted_proxy_gives_the_scheme_too(make_app):
    app = make_app(TRUSTED_PROXIES=1, CIVIC_CREDITS_ENV="test")
    response = app.test_client().get(
        "/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    )
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("value", ["-1", "many", "11"])
def test_trusted_proxies_must_be_a_small_whole_number(database_url, value):
    with pytest.raises(ConfigurationError, match="CIVIC_CREDITS_TRUSTED_PROXIES"):
        create_app(app_settings(database_url, TRUSTED_PROXIES=value))


PRODUCTION_OK = {
    "CIVIC_CREDITS_ENV": "production",
    "SECRET_KEY": STRONG_SECRET,
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/not-connected-to",
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/1",
    "MAIL_SERVER": "127.0.0.1",
}


@pytest.mark.parametrize(
    "change, setting, allowed_by",
    [
        ({"DATABASE_URL": "sqlite:///prod.sqlite"}, "DATABASE_URL", "ALLOW_SQLITE"),
        ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI", "ALLOW_MEMORY_RATELIMIT"),
        ({"RATELIMIT_STORAGE_URI": ""}, "RATELIMIT_STORAGE_URI", "ALLOW_MEMORY_RATELIMIT"),
        ({"MAIL_SERVER": ""}, "MAIL_SERVER", "ALLOW_NO_MAIL"),
    ],
)
def test_production_refuses_what_would_not_hold_unless_allowed(
    database_url, make_app, change, setting, allowed_by
):
    settings = {**PRODUCTION_OK, **change}
    with pytest.raises(ConfigurationError, match=f"{setting}.*CIVIC_CREDITS_{allowed_by}=true"):
        create_app(app_settings(database_url, **settings))
    app = make_app(**{**settings, allowed_by: "true"})
    assert app.config["CIVIC_CREDITS_ENV"] == "production"


def test_production_starts_on_postgresql_redis_and_a_mail_server(make_app):
    app = make_app(**PRODUCTION_OK, SESSION_COOKIE_SECURE=None)
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_production_allowances_come_from_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("CIVIC_CREDITS_ALLOW_NO_MAIL", "true")
    app = make_app(**{**PRODUCTION_OK, "MAIL_SERVER": ""})
    assert app.config["ALLOW_NO_MAIL"] is True
