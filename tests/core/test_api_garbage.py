"""Garbage to every API route: always API.md's JSON error, never a 500, nothing written.

The routes come from the app's URL map, so routes added later are covered too.
"""

import re

import pytest

from core.extensions import db
from core.models import Role

GARBAGE_BODIES = [
    ("not json at all", "application/json"),
    ("{", "application/json"),
    ('{"email": ', "application/json"),
    ("[]", "application/json"),
    ('"a string"', "application/json"),
    ("12", "application/json"),
    ("null", "application/json"),
    (
        '{"email": ["a"], "password": {"x": 1}, "amount": "many", "idempotency_key": 7}',
        "application/json",
    ),
    ('{"unexpected": true}', "application/json"),
    ("email=a&password=b", "application/x-www-form-urlencoded"),
    ("\xff\xfe\x00garbage", "application/json"),
    (
        '{"amount": -5, "to_email": "x", "code": "", "offer_id": "1; DROP TABLE users"}',
        "application/json",
    ),
]


def api_routes(app):
    """(method, path) of every API operation, with numeric ids filled in."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, path


def row_counts(app) -> dict:
    with app.app_context():
        counts = {}
        for table in db.metadata.sorted_tables:
            counts[table.name] = db.session.execute(
                db.select(db.func.count()).select_from(table)
            ).scalar_one()
        db.session.remove()
        return counts


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "all-roles"])
def test_garbage_to_every_api_route_gets_a_json_error(app, api, create_user, authenticated):
    token = api.token(create_user(*Role)) if authenticated else None
    before = row_counts(app)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failures = []
    try:
        for method, path in api_routes(app):
            for body, content_type in GARBAGE_BODIES:
                if method == "GET" and body != GARBAGE_BODIES[0][0]:
                    continue
                response = api.call(
                    method,
                    path,
                    token,
                    data=body.encode("utf-8", "surrogatepass"),
                    content_type=content_type,
                )
                ok = response.status_code < 500 and (
                    response.status_code < 400
                    or (
                        response.is_json
                        and set(response.get_json()["error"]) >= {"code", "message"}
                    )
                )
                if not ok:
                    failures.append((method, path, body, response.status_code))
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert not failures, failures
    after = row_counts(app)
    # Only sign-in tokens may have been written (by the token route given garbage: none).
    changed = {name for name in after if after[name] != before[name]}
    assert changed <= set(), changed


def test_missing_fields_are_named(api):
    response = api.post("/api/v1/residents", json={})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert set(error["fields"]) == {"email", "password", "display_name", "postcode"}


def test_malformed_json_is_invalid_request(api):
    response = api.post("/api/v1/auth/token", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
