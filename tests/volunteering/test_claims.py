"""Claims: minutes capped by the schedule, rounding, flags, approval once, roles."""

from datetime import datetime, timedelta

import pytest

from core.extensions import db
from core.mail import OutboxMessage
from core.models import Role
from core.timeutil import utcnow
from tests.volunteering.conftest import balance
from volunteering.operations import credits_for


@pytest.mark.parametrize(
    ("minutes", "per_hour", "rule", "expected"),
    [
        (30, 1, "half_up", 1),
        (29, 1, "half_up", 0),
        (89, 1, "half_up", 1),
        (90, 1, "half_up", 2),
        (59, 1, "down", 0),
        (1, 1, "up", 1),
        (45, 2, "half_up", 2),
        (20, 3, "down", 1),
        (0, 5, "up", 0),
    ],
)
def test_credits_follow_the_configured_rounding_rule(app, minutes, per_hour, rule, expected):
    with app.app_context():
        assert credits_for(minutes, per_hour, rule) == expected


def add_attendance(api, scene, tokens_of, *, minutes=60, key="sheet-1", start_offset=0):
    session = api.get(
        f"/api/v1/activities/{scene.activity_id}/sessions", tokens_of(scene.organiser)
    ).get_json()["items"][0]
    checked_in = datetime.fromisoformat(session["starts_at"]) + timedelta(minutes=start_offset)
    return api.post(
        f"/api/v1/sessions/{scene.session_id}/attendances",
        tokens_of(scene.organiser),
        json={
            "resident_id": scene.resident.id,
            "checked_in_at": checked_in.isoformat(),
            "checked_out_at": (checked_in + timedelta(minutes=minutes)).isoformat(),
            "idempotency_key": key,
        },
    )


def test_manual_attendance_waits_and_approving_twice_credits_once(app, api, scene, tokens_of):
    response = add_attendance(api, scene, tokens_of, minutes=60)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["claim"]["status"] == "pending"
    assert body["claim"]["minutes"] == 60 and body["claim"]["credits"] == 1
    queue = api.get("/api/v1/claims?status=pending", tokens_of(scene.council)).get_json()
    assert [c["id"] for c in queue["items"]] == [body["claim"]["id"]]
    assert queue["items"][0]["flags"] == ["manual"]
    approve = f"/api/v1/claims/{body['claim']['id']}/approve"
    first = api.post(approve, tokens_of(scene.council))
    assert first.status_code == 200 and first.get_json()["status"] == "approved"
    assert balance(app, scene.resident.id) == 1
    second = api.post(approve, tokens_of(scene.council))
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "not_pending"
    assert balance(app, scene.resident.id) == 1
    with app.app_context():
        subjects = (
            db.session.execute(
                db.select(OutboxMessage.subject).where(OutboxMessage.to == scene.resident.email)
            )
            .scalars()
            .all()
        )
    assert "You earned 1 credit" in subjects


def test_same_idempotency_key_returns_the_first_attendance(api, scene, tokens_of):
    first = add_attendance(api, scene, tokens_of, key="k")
    again = add_attendance(api, scene, tokens_of, key="k")
    assert again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    different = add_attendance(api, scene, tokens_of, key="k", minutes=30)
    assert different.status_code == 409
    assert different.get_json()["error"]["code"] == "idempotency_conflict"


def test_minutes_are_capped_by_the_schedule_plus_grace(api, scene, tokens_of):
    # The session runs 2 hours; 15 minutes of grace; arriving 20 minutes early counts nothing.
    response = add_attendance(api, scene, tokens_of, minutes=300, start_offset=-20)
    claim = response.get_json()["claim"]
    assert claim["minutes"] == 120 + 15
    assert claim["credits"] == 2


def test_reject_needs_a_reason_and_tells_the_resident(app, api, scene, tokens_of):
    claim = add_attendance(api, scene, tokens_of).get_json()["claim"]
    url = f"/api/v1/claims/{claim['id']}/reject"
    assert api.post(url, tokens_of(scene.council), json={}).status_code == 400
    rejected = api.post(url, tokens_of(scene.council), json={"reason": "Not on the sheet"})
    assert rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["decision_reason"] == "Not on the sheet"
    assert (
        api.post(f"/api/v1/claims/{claim['id']}/approve", tokens_of(scene.council)).status_code
        == 409
    )
    assert balance(app, scene.resident.id) == 0


def test_residents_and_organisers_cannot_decide_claims(api, scene, tokens_of):
    claim = add_attendance(api, scene, tokens_of).get_json()["claim"]
    for user in (scene.resident, scene.organiser):
        assert api.post(f"/api/v1/claims/{claim['id']}/approve", tokens_of(user)).status_code == 403
        assert api.get("/api/v1/claims", tokens_of(user)).status_code == 403


def test_council_cannot_approve_claims_of_an_organisation_they_organise(
    api, create_user, make_session, tokens_of
):
    both = create_user(Role.COUNCIL, Role.ORGANISER)
    resident = create_user(Role.RESIDENT)
    _, _, session_id = make_session(both)
    start = utcnow() - timedelta(minutes=30)
    claim = api.post(
        f"/api/v1/sessions/{session_id}/attendances",
        tokens_of(both),
        json={
            "resident_id": resident.id,
            "checked_in_at": start.isoformat(),
            "checked_out_at": (start + timedelta(hours=1)).isoformat(),
            "idempotency_key": "x",
        },
    ).get_json()["claim"]
    response = api.post(f"/api/v1/claims/{claim['id']}/approve", tokens_of(both))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "conflict_of_interest"


def test_overlapping_sessions_flag_the_claim(api, app, scene, make_session, tokens_of):
    _, _, other = make_session(scene.organiser, organisation_id=scene.organisation_id)
    add_attendance(api, scene, tokens_of, key="a")
    start = utcnow() - timedelta(minutes=30)
    response = api.post(
        f"/api/v1/sessions/{other}/attendances",
        tokens_of(scene.organiser),
        json={
            "resident_id": scene.resident.id,
            "checked_in_at": start.isoformat(),
            "checked_out_at": (start + timedelta(hours=1)).isoformat(),
            "idempotency_key": "b",
        },
    )
    claim_id = response.get_json()["claim"]["id"]
    claims = api.get("/api/v1/claims", tokens_of(scene.council)).get_json()["items"]
    flags = next(c["flags"] for c in claims if c["id"] == claim_id)
    assert "overlapping" in flags


def test_long_claims_wait_for_approval(app, api, create_user, make_session, tokens_of):
    organiser, resident = create_user(Role.ORGANISER), create_user(Role.RESIDENT)
    start = utcnow() - timedelta(hours=10)
    _, _, session_id = make_session(organiser, starts_at=start, ends_at=start + timedelta(hours=9))
    from core.models import User
    from volunteering import operations as ops

    with app.app_context():
        session = ops.get_session(session_id)
        user = db.session.get(User, resident.id)
        first = ops.record_scan(session, user.id, "n", start, ops.AttendanceSource.QR, user.id)
        assert first.state == "checked_in"
        result = ops.record_scan(
            session, user.id, "m", start + timedelta(hours=9), ops.AttendanceSource.QR, user.id
        )
        assert result.state == "checked_out"
        claim = result.attendance.claim
        assert claim.status == "pending"
        assert {"daily_maximum", "over_threshold"} <= set(claim.flags)
        db.session.rollback()


def test_claims_queue_filters_by_flag_and_organisation(api, scene, make_session, tokens_of):
    _, _, other = make_session(scene.organiser, organisation_id=scene.organisation_id)
    add_attendance(api, scene, tokens_of, key="a")
    start = utcnow() - timedelta(minutes=30)
    api.post(
        f"/api/v1/sessions/{other}/attendances",
        tokens_of(scene.organiser),
        json={
            "resident_id": scene.resident.id,
            "checked_in_at": start.isoformat(),
            "checked_out_at": (start + timedelta(hours=1)).isoformat(),
            "idempotency_key": "b",
        },
    )
    council = tokens_of(scene.council)
    manual = api.get("/api/v1/claims?flag=manual", council).get_json()["items"]
    overlapping = api.get("/api/v1/claims?flag=overlapping", council).get_json()["items"]
    assert len(manual) == 2 and len(overlapping) == 1
    assert overlapping[0]["session_id"] == other
    mine = api.get(f"/api/v1/claims?organisation_id={scene.organisation_id}", council)
    assert len(mine.get_json()["items"]) == 2
    assert api.get("/api/v1/claims?organisation_id=999", council).get_json()["items"] == []
    bad = api.get("/api/v1/claims?flag=%25", council)
    assert bad.status_code == 400


def test_claims_queue_is_paginated(api, scene, create_user, tokens_of):
    session = api.get(
        f"/api/v1/activities/{scene.activity_id}/sessions", tokens_of(scene.organiser)
    ).get_json()["items"][0]
    for number in range(3):
        resident = create_user(Role.RESIDENT)
        api.post(
            f"/api/v1/sessions/{scene.session_id}/attendances",
            tokens_of(scene.organiser),
            json={
                "resident_id": resident.id,
                "checked_in_at": session["starts_at"],
                "checked_out_at": session["ends_at"],
                "idempotency_key": f"p{number}",
            },
        )
    council = tokens_of(scene.council)
    first = api.get("/api/v1/claims?limit=2", council).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get(f"/api/v1/claims?limit=2&cursor={first['next_cursor']}", council).get_json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
