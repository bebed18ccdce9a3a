"""The JSON API skeleton: tokens, /me, the error shape everywhere, the OpenAPI document."""

from datetime import timedelta

import pytest
import time_machine

from core.extensions import db
from core.models import ApiToken, Role
from core.timeutil import utcnow


def test_token_for_good_credentials_has_user_and_expiry(api, create_user):
    user = create_user(Role.RESIDENT, Role.ORGANISER)
    response = api.post(
        "/api/v1/auth/token", json={"email": user.email.upper(), "password": user.password}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["email"] == user.email
    assert body["user"]["roles"] == ["organiser", "resident"]
    assert body["expires_at"].endswith("+00:00")
    assert len(body["token"]) >= 40


def test_wrong_password_is_401_invalid_credentials(api, create_user):
    user = create_user()
    response = api.post("/api/v1/auth/token", json={"email": user.email, "password": "nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"


def test_me_returns_the_user_with_roles_and_balance(api, create_user):
    user = create_user()
    body = api.get("/api/v1/me", api.token(user)).get_json()
    assert body["id"] == user.id and body["roles"] == ["resident"]
    assert body["balance"] == 0


def test_me_has_no_balance_for_staff_without_a_wallet(api, create_user):
    body = api.get("/api/v1/me", api.token(create_user(Role.COUNCIL))).get_json()
    assert body["balance"] is None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer forged-token-value", "Basic abc", "Bearer " + "x" * 5000],
)
def test_missing_or_forged_token_is_401_json(api, header):
    headers = {"Authorization": header} if header else {}
    response = api.client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]["code"] in {
        "unauthenticated",
        "invalid_token",
    }


def test_expired_token_is_refused(api, create_user):
    token = api.token(create_user())
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        response = api.get("/api/v1/me", token)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_expired"


def test_revoked_token_is_refused(api, create_user):
    token = api.token(create_user())
    assert api.call("DELETE", "/api/v1/auth/token", token).status_code == 204
    response = api.get("/api/v1/me", token)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_tokens_are_stored_only_as_digests(app, api, create_user):
    token = api.token(create_user())
    with app.app_context():
        stored = db.session.query(ApiToken).one()
        assert stored.token_digest != token and token not in stored.token_digest


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.is_json
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405(api):
    response = api.call("PUT", "/api/v1/me")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_unexpected_failure_is_json_500_without_a_trace(app, api, create_user, monkeypatch):
    token = api.token(create_user())
    import core.api

    def explode(user):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(core.api, "resident_balance", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = api.get("/api/v1/me", token)
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert "secret internal detail" not in response.get_data(as_text=True)


def test_unexpected_failure_on_a_page_is_a_styled_500(app, client, monkeypatch):
    import core.views

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(core.views, "render_template", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.get("/")
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "problem with the service" in html and "secret internal detail" not in html


def test_openapi_document_is_valid_openapi_3(api):
    from openapi_spec_validator import validate

    response = api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/auth/token", "/api/v1/residents", "/api/v1/me"):
        assert path in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_names_the_broker_when_it_is_down(app, client):
    app.config["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/healthz")
    finally:
        app.config["CELERY_BROKER_URL"] = "memory://"
    assert response.status_code == 503
    assert response.get_json()["broker"] == "down"
    assert response.get_json()["database"] == "ok"
