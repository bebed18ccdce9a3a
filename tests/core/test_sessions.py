"""Session hardening: renewal on sign-in, copied cookies refused, CSRF, cookie flags."""

from core.models import Role
from tests.conftest import PASSWORD, post_form, sign_in


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else ""


def replay(app, cookie_value: str):
    """A fresh browser presenting a copied session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie_value)
    return other.get("/account")


def test_sign_in_renews_the_session(client, create_user):
    user = create_user()
    client.get("/sign-in")
    before = session_cookie(client)
    sign_in(client, user)
    after = session_cookie(client)
    assert before and after and before != after
    assert client.get("/account").status_code == 200


def test_copied_cookie_stops_working_after_sign_out(app, client, create_user):
    sign_in(client, create_user())
    copied = session_cookie(client)
    assert replay(app, copied).status_code == 200
    post_form(client, "/sign-out", {}, page="/account")
    response = replay(app, copied)
    assert response.status_code == 302 and "/sign-in" in response.location


def test_copied_cookie_stops_working_after_password_change(app, client, create_user):
    user = create_user()
    sign_in(client, user)
    copied = session_cookie(client)
    response = post_form(
        client,
        "/account",
        {"current_password": PASSWORD, "new_password": "another good passphrase"},
    )
    assert response.status_code == 302
    assert replay(app, copied).status_code == 302
    assert client.get("/account").status_code == 200  # this browser got a fresh session


def test_copied_cookie_stops_working_after_a_role_change(app, client, create_user):
    admin = create_user(Role.ADMIN, Role.COUNCIL)
    person = create_user(Role.RESIDENT)
    person_browser = app.test_client()
    sign_in(person_browser, person)
    copied = session_cookie(person_browser)
    sign_in(client, admin)
    response = post_form(client, f"/admin/roles/{person.id}", {"roles": ["resident", "organiser"]})
    assert response.status_code == 302
    assert replay(app, copied).status_code == 302
    sign_in(person_browser, person)
    assert "Organise" in person_browser.get("/account").get_data(as_text=True)


def test_a_form_posted_without_its_csrf_token_is_refused(client, create_user):
    user = create_user()
    response = client.post("/sign-in", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "reload the page" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302


def test_wrong_password_on_the_page_is_a_clear_message(client, create_user):
    user = create_user()
    response = post_form(client, "/sign-in", {"email": user.email, "password": "wrong one!"})
    assert response.status_code == 401
    assert "Email address or password is not right" in response.get_data(as_text=True)


def test_sign_in_redirects_only_to_our_own_pages(client, create_user):
    user = create_user()
    html = client.get("/sign-in").get_data(as_text=True)
    from tests.conftest import csrf_token_from

    token = csrf_token_from(html)
    data = {"email": user.email, "password": PASSWORD, "csrf_token": token}
    response = client.post("/sign-in?next=//evil.example/steal", data=data)
    assert response.status_code == 302 and response.location == "/account"


def test_cookies_are_secure_httponly_and_samesite_outside_development(make_app):
    production_like = make_app(SESSION_COOKIE_SECURE=None, CIVIC_CREDITS_ENV="test")
    assert production_like.config["SESSION_COOKIE_SECURE"] is True
    assert production_like.config["SESSION_COOKIE_HTTPONLY"] is True
    assert production_like.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    client = production_like.test_client()
    response = client.get("/sign-in", base_url="https://localhost")
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_cookies_are_not_secure_in_development(make_app):
    development = make_app(SESSION_COOKIE_SECURE=None, CIVIC_CREDITS_ENV="development")
    assert development.config["SESSION_COOKIE_SECURE"] is False
