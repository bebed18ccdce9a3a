"""Organisations and activities through the API: proposals, council decisions, roles."""

from datetime import timedelta

from core.models import Role
from core.timeutil import utcnow


def test_organiser_proposes_and_council_approves_an_organisation_once(api, create_user, tokens_of):
    organiser = create_user(Role.ORGANISER)
    council = create_user(Role.COUNCIL)
    response = api.post("/api/v1/organisations", tokens_of(organiser), json={"name": "Lunch club"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "pending"
    approve = f"/api/v1/organisations/{body['id']}/approve"
    first = api.post(approve, tokens_of(council))
    assert first.status_code == 200 and first.get_json()["status"] == "approved"
    again = api.post(approve, tokens_of(council))
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "not_pending"


def test_residents_and_organisers_cannot_approve_organisations(api, create_user, tokens_of):
    organiser = create_user(Role.ORGANISER, Role.RESIDENT)
    organisation = api.post(
        "/api/v1/organisations", tokens_of(organiser), json={"name": "Lunch club"}
    ).get_json()
    for user in (organiser, create_user(Role.RESIDENT)):
        response = api.post(f"/api/v1/organisations/{organisation['id']}/approve", tokens_of(user))
        assert response.status_code == 403


def test_organisers_list_only_their_own_organisations(api, create_user, tokens_of):
    one, two = create_user(Role.ORGANISER), create_user(Role.ORGANISER)
    api.post("/api/v1/organisations", tokens_of(one), json={"name": "One"})
    api.post("/api/v1/organisations", tokens_of(two), json={"name": "Two"})
    names = [
        o["name"] for o in api.get("/api/v1/organisations", tokens_of(one)).get_json()["items"]
    ]
    assert names == ["One"]


def test_reject_and_suspend_take_a_reason(api, create_user, tokens_of):
    organiser, council = create_user(Role.ORGANISER), create_user(Role.COUNCIL)
    org = api.post("/api/v1/organisations", tokens_of(organiser), json={"name": "X"}).get_json()
    missing = api.post(f"/api/v1/organisations/{org['id']}/reject", tokens_of(council), json={})
    assert missing.status_code == 400
    assert "reason" in missing.get_json()["error"]["fields"]
    rejected = api.post(
        f"/api/v1/organisations/{org['id']}/reject",
        tokens_of(council),
        json={"reason": "Not in the area"},
    )
    assert rejected.get_json()["status"] == "rejected"


def test_activity_needs_an_approved_organisation(api, create_user, tokens_of):
    organiser = create_user(Role.ORGANISER)
    org = api.post("/api/v1/organisations", tokens_of(organiser), json={"name": "X"}).get_json()
    response = api.post(
        "/api/v1/activities",
        tokens_of(organiser),
        json={
            "organisation_id": org["id"],
            "title": "Litter pick",
            "category": "Environment",
            "credits_per_hour": 1,
            "location": "Roundhay Park",
        },
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "organisation_not_approved"


def test_activity_lifecycle_and_visibility(api, create_user, tokens_of):
    organiser, council = create_user(Role.ORGANISER), create_user(Role.COUNCIL)
    resident = create_user(Role.RESIDENT)
    org = api.post("/api/v1/organisations", tokens_of(organiser), json={"name": "X"}).get_json()
    api.post(f"/api/v1/organisations/{org['id']}/approve", tokens_of(council))
    created = api.post(
        "/api/v1/activities",
        tokens_of(organiser),
        json={
            "organisation_id": org["id"],
            "title": "Litter pick",
            "description": "Bring gloves",
            "category": "Environment",
            "credits_per_hour": 2,
            "location": "Roundhay Park",
            "ward": "Roundhay",
            "capacity": 10,
        },
    )
    assert created.status_code == 201, created.get_json()
    activity = created.get_json()
    assert activity["status"] == "pending"
    assert api.get("/api/v1/activities", tokens_of(resident)).get_json()["items"] == []
    mine = api.get("/api/v1/activities", tokens_of(organiser)).get_json()["items"]
    assert [a["id"] for a in mine] == [activity["id"]]
    session_body = {
        "starts_at": (utcnow() + timedelta(days=1)).isoformat(),
        "ends_at": (utcnow() + timedelta(days=1, hours=2)).isoformat(),
    }
    early = api.post(
        f"/api/v1/activities/{activity['id']}/sessions", tokens_of(organiser), json=session_body
    )
    assert early.status_code == 409
    assert early.get_json()["error"]["code"] == "activity_not_approved"
    assert (
        api.post(f"/api/v1/activities/{activity['id']}/approve", tokens_of(council)).get_json()[
            "status"
        ]
        == "approved"
    )
    again = api.post(
        f"/api/v1/activities/{activity['id']}/reject", tokens_of(council), json={"reason": "x"}
    )
    assert again.status_code == 409
    listed = api.get("/api/v1/activities", tokens_of(resident)).get_json()["items"]
    assert [a["title"] for a in listed] == ["Litter pick"]
    session = api.post(
        f"/api/v1/activities/{activity['id']}/sessions", tokens_of(organiser), json=session_body
    )
    assert session.status_code == 201 and "id" in session.get_json()


def test_unknown_category_is_refused(api, scene, tokens_of):
    response = api.post(
        "/api/v1/activities",
        tokens_of(scene.organiser),
        json={
            "organisation_id": scene.organisation_id,
            "title": "Knitting",
            "category": "Not a category",
            "credits_per_hour": 1,
            "location": "Library",
        },
    )
    assert response.status_code == 400
    assert "category" in response.get_json()["error"]["fields"]


def test_organiser_cannot_touch_another_organisations_activity(api, scene, create_user, tokens_of):
    other = create_user(Role.ORGANISER)
    token = tokens_of(other)
    body = {
        "starts_at": (utcnow() + timedelta(days=1)).isoformat(),
        "ends_at": (utcnow() + timedelta(days=1, hours=1)).isoformat(),
    }
    response = api.post(f"/api/v1/activities/{scene.activity_id}/sessions", token, json=body)
    assert response.status_code == 403
    code = api.get(f"/api/v1/sessions/{scene.session_id}/checkin-code", token)
    assert code.status_code == 403
    attendances = api.get(f"/api/v1/sessions/{scene.session_id}/attendances", token)
    assert attendances.status_code == 403
    added = api.post(
        f"/api/v1/sessions/{scene.session_id}/attendances",
        token,
        json={
            "resident_id": scene.resident.id,
            "checked_in_at": utcnow().isoformat(),
            "idempotency_key": "k1",
        },
    )
    assert added.status_code == 403
    invite = api.post(
        f"/api/v1/organisations/{scene.organisation_id}/organisers",
        token,
        json={"email": other.email},
    )
    assert invite.status_code == 403


def test_organisers_invite_another_organiser_by_email(api, scene, create_user, tokens_of):
    helper = create_user(Role.RESIDENT, email="helper@example.org")
    response = api.post(
        f"/api/v1/organisations/{scene.organisation_id}/organisers",
        tokens_of(scene.organiser),
        json={"email": "Helper@example.org"},
    )
    assert response.status_code == 201
    helper_token = api.token(helper)
    me = api.get("/api/v1/me", helper_token).get_json()
    assert "organiser" in me["roles"]
    code = api.get(f"/api/v1/sessions/{scene.session_id}/checkin-code", helper_token)
    assert code.status_code == 200


def test_signup_respects_capacity(api, create_user, make_session, tokens_of):
    organiser = create_user(Role.ORGANISER)
    _, _, session_id = make_session(organiser, starts_at=utcnow() + timedelta(days=1), capacity=1)
    first, second = create_user(Role.RESIDENT), create_user(Role.RESIDENT)
    assert api.post(f"/api/v1/sessions/{session_id}/signup", tokens_of(first)).status_code == 201
    full = api.post(f"/api/v1/sessions/{session_id}/signup", tokens_of(second))
    assert full.status_code == 409 and full.get_json()["error"]["code"] == "session_full"
    assert (
        api.call("DELETE", f"/api/v1/sessions/{session_id}/signup", tokens_of(first)).status_code
        == 204
    )
    assert api.post(f"/api/v1/sessions/{session_id}/signup", tokens_of(second)).status_code == 201


def test_cancelled_session_takes_no_scans_and_tells_residents(api, app, scene, tokens_of):
    from core.extensions import db
    from core.mail import OutboxMessage

    assert api.post(f"/api/v1/sessions/{scene.session_id}/signup", tokens_of(scene.resident))
    code = api.get(
        f"/api/v1/sessions/{scene.session_id}/checkin-code", tokens_of(scene.organiser)
    ).get_json()
    cancelled = api.post(f"/api/v1/sessions/{scene.session_id}/cancel", tokens_of(scene.organiser))
    assert cancelled.status_code == 200 and cancelled.get_json()["cancelled_at"]
    again = api.post(f"/api/v1/sessions/{scene.session_id}/cancel", tokens_of(scene.organiser))
    assert again.status_code == 409
    scan = api.post(
        "/api/v1/checkins", tokens_of(scene.resident), json={"token": code["token"], "nonce": "n"}
    )
    assert scan.get_json()["error"]["code"] == "session_not_open"
    with app.app_context():
        subjects = (
            db.session.execute(
                db.select(OutboxMessage.subject).where(OutboxMessage.to == scene.resident.email)
            )
            .scalars()
            .all()
        )
    assert any(subject.startswith("Cancelled:") for subject in subjects)


def test_inviting_someone_without_an_account_emails_them(api, app, scene, tokens_of):
    from core.extensions import db
    from core.mail import OutboxMessage

    response = api.post(
        f"/api/v1/organisations/{scene.organisation_id}/organisers",
        tokens_of(scene.organiser),
        json={"email": "new.helper@example.org"},
    )
    assert response.status_code == 202
    assert response.get_json()["status"] == "invited"
    with app.app_context():
        message = db.session.execute(
            db.select(OutboxMessage).where(OutboxMessage.to == "new.helper@example.org")
        ).scalar_one()
    assert "/register" in message.body
    bad = api.post(
        f"/api/v1/organisations/{scene.organisation_id}/organisers",
        tokens_of(scene.organiser),
        json={"email": "not an email"},
    )
    assert bad.status_code == 400
