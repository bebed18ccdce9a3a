"""QR check-in through the API: tokens, windows, nonces, and the claims that follow."""

from datetime import timedelta

import time_machine

from core.models import Role
from core.timeutil import utcnow
from tests.volunteering.conftest import balance


def checkin_code(api, scene, tokens_of) -> dict:
    response = api.get(
        f"/api/v1/sessions/{scene.session_id}/checkin-code", tokens_of(scene.organiser)
    )
    assert response.status_code == 200
    return response.get_json()


def scan(api, token, resident_token, nonce):
    return api.post("/api/v1/checkins", resident_token, json={"token": token, "nonce": nonce})


def test_checkin_code_is_a_url_with_a_qr_image(api, scene, tokens_of):
    code = checkin_code(api, scene, tokens_of)
    assert code["url"].endswith(code["token"])
    assert "/c/" in code["url"]
    assert code["qr_svg"].startswith("<svg")
    assert code["expires_at"]


def test_first_scan_checks_in_second_checks_out(api, app, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    resident = tokens_of(scene.resident)
    first = scan(api, token, resident, "n-1")
    assert first.status_code == 201
    assert first.get_json()["state"] == "checked_in"
    attendance_id = first.get_json()["attendance_id"]
    with time_machine.travel(utcnow() + timedelta(minutes=45), tick=False):
        token = checkin_code(api, scene, tokens_of)["token"]
        second = scan(api, token, resident, "n-2")
    assert second.status_code == 200, second.get_json()
    body = second.get_json()
    assert body["state"] == "checked_out"
    assert body["attendance_id"] == attendance_id
    assert body["minutes"] == 45
    assert body["credits"] == 1  # 45 minutes at 1 credit an hour, rounded half up
    assert body["claim_status"] == "approved"
    assert balance(app, scene.resident.id) == 1


def test_same_nonce_twice_records_once_and_answers_the_same(api, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    resident = tokens_of(scene.resident)
    first = scan(api, token, resident, "same-nonce")
    replay = scan(api, token, resident, "same-nonce")
    assert replay.status_code == first.status_code == 201
    assert replay.get_json() == first.get_json()
    out = scan(api, token, resident, "out-nonce")
    out_again = scan(api, token, resident, "out-nonce")
    assert out.status_code == out_again.status_code == 200
    assert out.get_json() == out_again.get_json()
    listed = api.get(
        f"/api/v1/sessions/{scene.session_id}/attendances", tokens_of(scene.organiser)
    ).get_json()["items"]
    assert len(listed) == 1


def test_third_scan_after_check_out_is_a_conflict(api, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    resident = tokens_of(scene.resident)
    scan(api, token, resident, "a")
    scan(api, token, resident, "b")
    third = scan(api, token, resident, "c")
    assert third.status_code == 409
    assert third.get_json()["error"]["code"] == "already_checked_out"


def test_tampered_token_is_invalid(api, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = scan(api, tampered, tokens_of(scene.resident), "n")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "token_invalid"


def test_token_rewritten_for_another_session_is_invalid(api, app, scene, tokens_of):
    from itsdangerous import base64_decode, base64_encode

    token = checkin_code(api, scene, tokens_of)["token"]
    payload, rest = token.split(".", 1)
    data = base64_decode(payload).decode().replace(f'"s":{scene.session_id}', '"s":999')
    forged = base64_encode(data.encode()).decode() + "." + rest
    response = scan(api, forged, tokens_of(scene.resident), "n")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "token_invalid"


def test_token_of_another_session_checks_into_that_session_only(
    api, scene, make_session, tokens_of
):
    _, _, other_session = make_session(scene.organiser, organisation_id=scene.organisation_id)
    response = api.get(
        f"/api/v1/sessions/{other_session}/checkin-code", tokens_of(scene.organiser)
    ).get_json()
    scan(api, response["token"], tokens_of(scene.resident), "n")
    mine = api.get(
        f"/api/v1/sessions/{scene.session_id}/attendances", tokens_of(scene.organiser)
    ).get_json()["items"]
    theirs = api.get(
        f"/api/v1/sessions/{other_session}/attendances", tokens_of(scene.organiser)
    ).get_json()["items"]
    assert mine == [] and len(theirs) == 1


def test_card_token_is_not_a_checkin_token(api, app, scene, tokens_of):
    from volunteering.tokens import card_token

    with app.test_request_context():
        card = card_token(scene.resident.id)
    response = scan(api, card, tokens_of(scene.resident), "n")
    assert response.get_json()["error"]["code"] == "token_invalid"


def test_expired_token_is_refused(api, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    resident = tokens_of(scene.resident)
    with time_machine.travel(utcnow() + timedelta(seconds=61), tick=False):
        response = scan(api, token, resident, "n")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "token_expired"


def test_scan_outside_the_session_window_is_refused(api, create_user, make_session, tokens_of):
    organiser = create_user(Role.ORGANISER)
    resident = create_user(Role.RESIDENT)
    _, _, session_id = make_session(organiser, starts_at=utcnow() + timedelta(hours=3))
    token = api.get(f"/api/v1/sessions/{session_id}/checkin-code", tokens_of(organiser)).get_json()
    response = scan(api, token["token"], tokens_of(resident), "n")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "session_not_open"


def test_poster_token_works_only_inside_the_window(api, app, scene, tokens_of):
    from volunteering.tokens import poster_token

    with app.test_request_context():
        poster = poster_token(scene.session_id)
    resident = tokens_of(scene.resident)
    with time_machine.travel(utcnow() + timedelta(hours=4), tick=False):
        late = scan(api, poster, resident, "late")
    assert late.get_json()["error"]["code"] == "session_not_open"
    assert scan(api, poster, resident, "now").status_code == 201


def test_only_residents_check_in(api, scene, create_user, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    partner = create_user(Role.PARTNER_STAFF)
    response = scan(api, token, tokens_of(partner), "n")
    assert response.status_code == 403


def test_missing_nonce_is_invalid_request(api, scene, tokens_of):
    token = checkin_code(api, scene, tokens_of)["token"]
    response = api.post("/api/v1/checkins", tokens_of(scene.resident), json={"token": token})
    assert response.status_code == 400
    assert "nonce" in response.get_json()["error"]["fields"]
