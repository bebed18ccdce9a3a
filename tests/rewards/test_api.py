"""The wallet's JSON API: GET /wallet, /wallet/transactions, POST /gifts, /pots."""

from __future__ import annotations

import pytest

from core.models import Role
from rewards import operations as ops
from tests.rewards.conftest import give


@pytest.fixture
def token(api, resident):
    return api.token(resident)


def test_a_new_resident_has_an_empty_wallet(api, token, in_app):
    response = api.get("/api/v1/wallet", token)
    assert response.status_code == 200
    assert response.get_json() == {
        "balance": 0,
        "lots": [],
        "next_expiry": None,
        "next_expiry_amount": 0,
    }
    assert api.get("/api/v1/wallet/transactions", token).get_json() == {
        "items": [],
        "next_cursor": None,
    }


def test_wallet_shows_balance_and_lots_soonest_expiring_first(api, token, in_app, resident):
    in_app(give, resident.id, 5, days=200)
    in_app(give, resident.id, 2, days=20)
    body = api.get("/api/v1/wallet", token).get_json()
    assert body["balance"] == 7
    assert [(lot["amount"], lot["remaining"]) for lot in body["lots"]] == [(2, 2), (5, 5)]
    assert body["lots"][0]["days_left"] in (19, 20)
    assert body["next_expiry"] == body["lots"][0]["expires_at"]
    assert body["next_expiry_amount"] == 2
    assert api.get("/api/v1/me", token).get_json()["balance"] == 7


def test_history_is_newest_first_in_words_and_paginated(api, token, in_app, resident, partner):
    for n in range(3):
        in_app(give, resident.id, 2, key=f"earn-{n}")
    in_app(ops.spend, resident.id, partner.id, 1, idempotency_key="s", description="coffee")
    first = api.get("/api/v1/wallet/transactions?limit=2", token).get_json()
    assert [item["summary"] for item in first["items"]] == [
        "\u22121 at The Corner Café: coffee",
        "+2 for Litter pick, Roundhay Park",
    ]
    assert first["items"][0]["kind"] == "spend" and first["items"][0]["amount"] == -1
    assert first["items"][0]["balance_after"] == 5
    assert first["items"][0]["description"] == "at The Corner Café: coffee"
    second = api.get(f"/api/v1/wallet/transactions?limit=2&cursor={first['next_cursor']}", token)
    body = second.get_json()
    assert [item["balance_after"] for item in body["items"]] == [4, 2]
    assert body["next_cursor"] is None


@pytest.mark.parametrize("query", ["cursor=abc", "cursor=e", "limit=0", "limit=201", "limit=x"])
def test_bad_paging_arguments_are_invalid_requests(api, token, query):
    response = api.get(f"/api/v1/wallet/transactions?{query}", token)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_wallet_needs_a_resident_token(api, create_user):
    assert api.get("/api/v1/wallet").status_code == 401
    partner_staff = api.token(create_user(Role.PARTNER_STAFF))
    response = api.get("/api/v1/wallet", partner_staff)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    assert api.post("/api/v1/gifts", partner_staff, json={}).status_code == 403


def test_gift_to_another_resident_by_email(api, token, in_app, resident, other_resident):
    in_app(give, resident.id, 5)
    body = {"to_email": other_resident.email, "amount": 3, "idempotency_key": "gift-1"}
    response = api.post("/api/v1/gifts", token, json=body)
    assert response.status_code == 201, response.get_json()
    gift = response.get_json()
    assert gift["kind"] == "gift" and gift["amount"] == 3 and gift["balance_after"] == 2
    assert gift["to"] == other_resident.display_name
    replay = api.post("/api/v1/gifts", token, json=body)
    assert replay.status_code == 201 and replay.get_json() == gift
    assert api.get("/api/v1/wallet", token).get_json()["balance"] == 2
    receiver = api.get("/api/v1/wallet", api.token(other_resident)).get_json()
    assert receiver["balance"] == 3


def test_same_gift_key_with_a_different_body_is_a_conflict(
    api, token, in_app, resident, other_resident
):
    in_app(give, resident.id, 5)
    body = {"to_email": other_resident.email, "amount": 1, "idempotency_key": "gift-1"}
    assert api.post("/api/v1/gifts", token, json=body).status_code == 201
    response = api.post("/api/v1/gifts", token, json={**body, "amount": 2})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_conflict"


def test_gift_refusals(api, token, in_app, resident, other_resident):
    in_app(give, resident.id, 2)
    cases = [
        ({"to_email": other_resident.email, "amount": 3}, 422, "insufficient_credits"),
        ({"to_email": "nobody@example.org", "amount": 1}, 404, "recipient_not_found"),
        ({"to_email": resident.email, "amount": 1}, 422, "invalid_recipient"),
        ({"to_pot_id": 999, "amount": 1}, 404, "recipient_not_found"),
        ({"to_email": other_resident.email, "amount": 0}, 400, "invalid_request"),
        ({"to_email": other_resident.email, "amount": "1"}, 400, "invalid_request"),
        ({"amount": 1}, 400, "invalid_request"),
    ]
    for n, (body, status, code) in enumerate(cases):
        response = api.post("/api/v1/gifts", token, json={**body, "idempotency_key": f"k{n}"})
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    assert api.get("/api/v1/wallet", token).get_json()["balance"] == 2


def test_council_creates_a_pot_and_residents_give_to_it(api, token, in_app, resident, create_user):
    council = api.token(create_user(Role.COUNCIL))
    created = api.post("/api/v1/pots", council, json={"name": "Food bank", "description": "Meals"})
    assert created.status_code == 201
    pot = created.get_json()
    assert pot["name"] == "Food bank" and pot["balance"] == 0
    again = api.post("/api/v1/pots", council, json={"name": "Food Bank"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "pot_exists"
    assert api.post("/api/v1/pots", token, json={"name": "Mine"}).status_code == 403
    in_app(give, resident.id, 3)
    gift = api.post(
        "/api/v1/gifts", token, json={"to_pot_id": pot["id"], "amount": 2, "idempotency_key": "p"}
    )
    assert gift.status_code == 201 and gift.get_json()["to"] == "Food bank"
    pots = api.get("/api/v1/pots", token).get_json()
    assert [(p["name"], p["balance"]) for p in pots] == [("Food bank", 2)]


def test_the_openapi_document_describes_the_wallet(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/wallet", "/api/v1/wallet/transactions", "/api/v1/gifts", "/api/v1/pots"):
        assert path in paths
