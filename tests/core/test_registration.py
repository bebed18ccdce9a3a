"""Registering a resident, on the page and through the API, and the bad input of both."""

import pytest

from core.extensions import db
from core.models import User
from tests.conftest import post_form


def count_users(app) -> int:
    with app.app_context():
        return db.session.query(User).count()


GOOD = {
    "email": "new.person@example.org",
    "display_name": "Sam",
    "postcode": "ls8 2he",
    "password": "a long enough passphrase",
}


def test_registering_on_the_page_signs_the_resident_in(client, app):
    response = post_form(client, "/register", GOOD)
    assert response.status_code == 302 and response.location.endswith("/account")
    page = client.get("/account").get_data(as_text=True)
    assert "Sam" in page and "LS8 2HE" in page and "Resident" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "not-an-email"}, "Enter an email address in the correct format"),
        ({"password": "short"}, "at least 10 characters"),
        ({"password": "password123"}, "harder to guess"),
        ({"postcode": "NOT A CODE"}, "Enter a real UK postcode"),
        ({"display_name": ""}, "Enter your name"),
        ({"email": ""}, "Enter your email address"),
    ],
)
def test_bad_registration_shows_the_problem_and_saves_nothing(client, app, change, message):
    response = post_form(client, "/register", {**GOOD, **change})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "There is a problem" in html and message in html
    assert count_users(app) == 0


def test_taken_email_on_the_page_says_so(client, app, create_user):
    create_user(email="taken@example.org")
    response = post_form(client, "/register", {**GOOD, "email": "Taken@Example.org"})
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)
    assert count_users(app) == 1


def test_registering_through_the_api_returns_the_user(api):
    response = api.post("/api/v1/residents", json=GOOD)
    assert response.status_code == 201
    body = response.get_json()
    assert body["email"] == "new.person@example.org"
    assert body["roles"] == ["resident"]
    assert "password" not in str(body) and "hash" not in str(body)


def test_taken_email_through_the_api_is_409_email_taken(api, create_user):
    create_user(email="new.person@example.org")
    response = api.post("/api/v1/residents", json=GOOD)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"password": "short"}, "password"),
        ({"email": "nope"}, "email"),
        ({"postcode": "12345"}, "postcode"),
        ({"display_name": 42}, "display_name"),
        ({"email": None}, "email"),
    ],
)
def test_bad_registration_through_the_api_is_400_naming_the_field(api, app, change, field):
    response = api.post("/api/v1/residents", json={**GOOD, **change})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["fields"]
    assert count_users(app) == 0
