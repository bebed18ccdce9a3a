"""The hardship extension's JSON API: ``POST /api/v1/residents/{id}/extensions`` (council),
the same operation as the council's extend-credits page, audited and idempotent by key."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from core.models import AuditEntry, Role
from core.timeutil import utcnow
from rewards.models import CreditLot


def url(resident_id: int) -> str:
    return f"/api/v1/residents/{resident_id}/extensions"


def expiry_of(world, lot_id: int) -> datetime:
    return world.scalar(select(CreditLot.expires_at).where(CreditLot.id == lot_id))


@pytest.fixture
def robin(world):
    """A resident with two live lots and one spent."""
    robin = world.resident("Robin")
    now = utcnow()
    robin.soon = world.earn(robin, 5, expires_at=now + timedelta(days=3))
    robin.later = world.earn(robin, 4, expires_at=now + timedelta(days=100))
    return robin


@pytest.fixture
def council(world, api):
    return api.token(world.council)


def test_council_extends_every_live_lot_by_days_and_it_is_audited(world, api, council, robin):
    before = {lot: expiry_of(world, lot) for lot in (robin.soon, robin.later)}
    response = api.post(
        url(robin.id),
        council,
        json={"days": 30, "reason": "In hospital", "idempotency_key": "ext-1"},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["resident_id"] == robin.id and body["days"] == 30 and body["credits"] == 9
    assert body["new_expires_at"] is None and body["reason"] == "In hospital"
    lots = {lot["id"]: lot for lot in body["lots"]}
    assert set(lots) == {robin.soon, robin.later}
    for lot_id, old in before.items():
        assert expiry_of(world, lot_id) == old + timedelta(days=30)
        assert datetime.fromisoformat(lots[lot_id]["expires_at"]) == old + timedelta(days=30)
        assert datetime.fromisoformat(lots[lot_id]["previous_expires_at"]) == old
    entry = world.scalar(select(AuditEntry).where(AuditEntry.action == "credits.extended"))
    assert entry.actor_id == world.council.id and entry.subject == f"user:{robin.id}"
    assert entry.reason == "In hospital" and entry.details["days"] == 30
    assert entry.details["idempotency_key"] == "ext-1"
    assert {lot["lot_id"] for lot in entry.details["lots"]} == {robin.soon, robin.later}


def test_a_new_date_for_named_lots_only(world, api, council, robin):
    later_before = expiry_of(world, robin.later)
    until = (utcnow() + timedelta(days=60)).replace(microsecond=0)
    response = api.post(
        url(robin.id),
        council,
        json={
            "new_expires_at": until.isoformat(),
            "reason": "Caring for a relative",
            "lot_ids": [robin.soon],
            "idempotency_key": "ext-2",
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert [lot["id"] for lot in body["lots"]] == [robin.soon]
    assert datetime.fromisoformat(body["new_expires_at"]) == until
    assert expiry_of(world, robin.soon) == until
    assert expiry_of(world, robin.later) == later_before  # not named


def test_the_same_key_answers_again_and_another_body_conflicts(world, api, council, robin):
    body = {"days": 10, "reason": "Flood", "idempotency_key": "ext-3"}
    first = api.post(url(robin.id), council, json=body)
    again = api.post(url(robin.id), council, json=body)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert world.count(AuditEntry, AuditEntry.action == "credits.extended") == 1
    changed = api.post(url(robin.id), council, json={**body, "days": 20})
    assert changed.status_code == 409
    assert changed.get_json()["error"]["code"] == "idempotency_conflict"
    assert world.count(AuditEntry, AuditEntry.action == "credits.extended") == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"days": 30, "reason": "", "idempotency_key": "k"}, "reason"),
        ({"days": 30, "idempotency_key": "k"}, "reason"),
        ({"reason": "x", "idempotency_key": "k"}, "days"),
        (
            {
                "days": 30,
                "new_expires_at": "2099-01-01T00:00:00+00:00",
                "reason": "x",
                "idempotency_key": "k",
            },
            "days",
        ),
        ({"days": 0, "reason": "x", "idempotency_key": "k"}, "days"),
        ({"days": 5000, "reason": "x", "idempotency_key": "k"}, "days"),
        ({"days": "30", "reason": "x", "idempotency_key": "k"}, "days"),
        ({"days": 30, "reason": "x"}, "idempotency_key"),
        ({"new_expires_at": "2030-01-01T00:00:00", "reason": "x", "idempotency_key": "k"}, None),
        (
            {"new_expires_at": "2000-01-01T00:00:00+00:00", "reason": "x", "idempotency_key": "k"},
            None,
        ),
        ({"days": 30, "reason": "x", "idempotency_key": "k", "lot_ids": []}, "lot_ids"),
        ({"days": 30, "reason": "x", "idempotency_key": "k", "colour": "red"}, "colour"),
    ],
)
def test_bad_requests_are_400_with_the_field_named(world, api, council, robin, body, field):
    response = api.post(url(robin.id), council, json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    if field:
        assert field in error["fields"], error
    assert world.count(AuditEntry, AuditEntry.action == "credits.extended") == 0


def test_someone_elses_lot_is_refused(world, api, council, robin):
    sam = world.resident("Sam")
    sams = world.earn(sam, 2, expires_at=utcnow() + timedelta(days=3))
    response = api.post(
        url(robin.id),
        council,
        json={"days": 5, "reason": "x", "lot_ids": [robin.soon, sams], "idempotency_key": "k"},
    )
    assert response.status_code == 400
    assert "lot_ids" in response.get_json()["error"]["fields"]
    assert world.count(AuditEntry, AuditEntry.action == "credits.extended") == 0


def test_unknown_resident_is_404_and_nothing_to_extend_is_409(world, api, council, create_user):
    body = {"days": 5, "reason": "x", "idempotency_key": "k"}
    missing = api.post(url(999_999), council, json=body)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "resident_not_found"
    organiser = create_user(Role.ORGANISER)
    assert api.post(url(organiser.id), council, json=body).status_code == 404
    penniless = world.resident("Pat")
    empty = api.post(url(penniless.id), council, json=body)
    assert empty.status_code == 409
    assert empty.get_json()["error"]["code"] == "nothing_to_extend"
    # A date no lot is before: nothing would change.
    lot = world.earn(penniless, 1, expires_at=utcnow() + timedelta(days=300))
    sooner = (utcnow() + timedelta(days=10)).isoformat()
    same = api.post(
        url(penniless.id),
        council,
        json={"new_expires_at": sooner, "reason": "x", "lot_ids": [lot], "idempotency_key": "k"},
    )
    assert same.status_code == 409
    assert same.get_json()["error"]["code"] == "nothing_to_extend"


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_only_council_and_admins_may_extend(world, api, create_user, robin, role):
    token = api.token(create_user(role))
    response = api.post(
        url(robin.id), token, json={"days": 5, "reason": "x", "idempotency_key": role.value}
    )
    if role in (Role.COUNCIL, Role.ADMIN):
        assert response.status_code == 201, response.get_json()
    else:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    assert api.post(url(robin.id), json={"days": 5}).status_code == 401


def test_the_openapi_document_describes_it(api):
    spec = api.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/residents/{resident_id}/extensions"]["post"]
    assert {"201", "404", "409"} <= set(operation["responses"])
    assert "ExtensionRequest" in str(operation["requestBody"])
    assert operation["security"] == [{"bearerAuth": []}]
