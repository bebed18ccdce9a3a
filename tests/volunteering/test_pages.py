"""The volunteering pages: each role sees its own, forms work, the scan URL checks in and out."""

import io
import re
from datetime import timedelta

import pytest
import time_machine

from core.extensions import db
from core.models import Role
from core.timeutil import utcnow
from tests.conftest import csrf_token_from, post_form, sign_in
from tests.volunteering.conftest import balance


def any_csrf_token(html: str) -> str:
    """The CSRF token of a page whose forms have prefixes (``sheet-csrf_token``)."""
    return re.search(r'name="[a-z-]*csrf_token"[^>]*value="([^"]+)"', html).group(1)


def organiser_pages(scene):
    s = scene.session_id
    return [
        "/organise",
        "/organise/organisations/new",
        f"/organise/organisations/{scene.organisation_id}",
        f"/organise/organisations/{scene.organisation_id}/activities/new",
        f"/organise/activities/{scene.activity_id}",
        f"/organise/sessions/{s}",
        f"/organise/sessions/{s}/check-in",
        f"/organise/sessions/{s}/poster",
        f"/organise/sessions/{s}/scan-cards",
        f"/organise/sessions/{s}/attendance",
        "/cards",
    ]


COUNCIL_PAGES = ["/council/claims", "/council/activities", "/council/organisations", "/cards"]


def test_organiser_pages_render(client, scene):
    sign_in(client, scene.organiser)
    for path in organiser_pages(scene):
        response = client.get(path)
        assert response.status_code == 200, path


def test_another_organiser_is_refused_every_page_of_this_organisation(client, scene, create_user):
    sign_in(client, create_user(Role.ORGANISER))
    for path in organiser_pages(scene)[2:-1]:
        assert client.get(path).status_code == 403, path


def test_council_pages_render_and_residents_are_refused(client, scene, create_user):
    sign_in(client, scene.council)
    for path in COUNCIL_PAGES:
        assert client.get(path).status_code == 200, path
    other = create_user(Role.RESIDENT)
    client2 = client.application.test_client()
    sign_in(client2, other)
    for path in COUNCIL_PAGES:
        assert client2.get(path).status_code == 403, path


def test_resident_finds_and_signs_up_to_a_session(client, scene):
    sign_in(client, scene.resident)
    page = client.get("/activities?q=litter&category=Environment&ward=Roundhay")
    html = page.get_data(as_text=True)
    assert "Litter pick" in html and "Roundhay Park" in html
    response = post_form(client, f"/sessions/{scene.session_id}/sign-up", {}, page="/activities")
    assert response.status_code == 302
    assert "You have a place" in client.get("/activities").get_data(as_text=True)
    nothing = client.get("/activities?q=knitting").get_data(as_text=True)
    assert "No sessions match" in nothing


def test_check_in_screen_shows_a_qr_and_its_code_refreshes(client, scene):
    sign_in(client, scene.organiser)
    html = client.get(f"/organise/sessions/{scene.session_id}/check-in").get_data(as_text=True)
    assert "<svg" in html and "data-checkin-code-url" in html
    first = client.get(f"/organise/sessions/{scene.session_id}/check-in-code").get_json()
    second = client.get(f"/organise/sessions/{scene.session_id}/check-in-code").get_json()
    assert first["token"] != second["token"]
    assert first["qr_svg"].startswith("<svg")


def scan_url(app, session_id):
    from volunteering.tokens import rotating_token

    with app.test_request_context():
        token, _ = rotating_token(session_id)
    return f"/c/{token}"


def test_scan_url_signs_in_then_checks_in_and_later_out(app, client, scene):
    url = scan_url(app, scene.session_id)
    response = client.get(url)
    assert response.status_code == 302
    assert "/sign-in" in response.location
    next_url = re.search(r"next=([^&]+)", response.location).group(1)
    from urllib.parse import unquote

    receipt_url = unquote(next_url)
    with time_machine.travel(utcnow() + timedelta(minutes=3), tick=False):
        sign_in(client, scene.resident)
        page = client.get(receipt_url)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Check in now" in html
        nonce = re.search(r'name="nonce" value="([^"]+)"', html).group(1)
        done = client.post(receipt_url, data={"csrf_token": csrf_token_from(html), "nonce": nonce})
        assert "You are checked in" in done.get_data(as_text=True)
        again = client.post(receipt_url, data={"csrf_token": csrf_token_from(html), "nonce": nonce})
        assert "You are checked in" in again.get_data(as_text=True)
    with time_machine.travel(utcnow() + timedelta(minutes=63), tick=False):
        url = scan_url(app, scene.session_id)
        html = client.get(url).get_data(as_text=True)
        assert "Check out now" in html
        nonce = re.search(r'name="nonce" value="([^"]+)"', html).group(1)
        out = client.post(url, data={"csrf_token": csrf_token_from(html), "nonce": nonce})
        text = out.get_data(as_text=True)
        assert "You are checked out" in text and "1 credit" in text
    assert balance(app, scene.resident.id) == 1


def test_expired_scan_url_says_so(app, client, scene):
    url = scan_url(app, scene.session_id)
    sign_in(client, scene.resident)
    with time_machine.travel(utcnow() + timedelta(minutes=5), tick=False):
        response = client.get(url)
    assert response.status_code == 422
    assert "This code has expired" in response.get_data(as_text=True)


def test_resident_card_page_shows_qr_and_number(client, scene):
    from volunteering.tokens import card_number

    sign_in(client, scene.resident)
    html = client.get("/card").get_data(as_text=True)
    assert "<svg" in html and card_number(scene.resident.id) in html


def test_organiser_checks_a_card_in_and_out_by_number(app, client, scene):
    from volunteering.tokens import card_number

    sign_in(client, scene.organiser)
    url = f"/organise/sessions/{scene.session_id}/scan-cards"
    number = card_number(scene.resident.id)
    first = post_form(client, url, {"card": number, "nonce": "a"})
    assert "Resident is checked in" in first.get_data(as_text=True)
    second = post_form(client, url, {"card": number, "nonce": "b"})
    assert "Resident is checked out" in second.get_data(as_text=True)
    wrong = post_form(client, url, {"card": "1234567", "nonce": "c"})
    assert wrong.status_code == 400


def test_sheet_rows_add_attendance_waiting_for_approval(app, client, scene):
    sign_in(client, scene.organiser)
    url = f"/organise/sessions/{scene.session_id}/attendance"
    token = any_csrf_token(client.get(url).get_data(as_text=True))
    response = client.post(
        url,
        data={
            "sheet-csrf_token": token,
            "sheet-rows-0-who": scene.resident.email,
            "sheet-rows-0-checked_in": "",
            "sheet-rows-0-checked_out": "",
            "sheet-submit": "Add attendance",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    from volunteering.models import Claim

    with app.app_context():
        claim = db.session.execute(db.select(Claim)).scalar_one()
        assert claim.status == "pending" and claim.minutes == 120
        assert "manual" in claim.flags


def test_bad_csv_reports_each_row_and_writes_nothing(app, client, scene, create_user):
    other = create_user(Role.RESIDENT)
    sign_in(client, scene.organiser)
    url = f"/organise/sessions/{scene.session_id}/attendance"
    token = any_csrf_token(client.get(url).get_data(as_text=True))
    body = (
        f"who,arrived,left\n{other.email},,\n"
        f"nobody@example.org,10:00,11:00\n{scene.resident.email},25:00,\n"
    )
    response = client.post(
        url,
        data={
            "csv-csrf_token": token,
            "csv-file": (io.BytesIO(body.encode()), "sheet.csv"),
            "csv-submit": "Upload sheet",
        },
        content_type="multipart/form-data",
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "CSV 2:" in text and "CSV 3:" in text and "CSV 1:" not in text
    from volunteering.models import Attendance

    with app.app_context():
        assert db.session.execute(db.select(Attendance)).first() is None


def test_good_csv_adds_every_row(app, client, scene, create_user):
    other = create_user(Role.RESIDENT)
    sign_in(client, scene.organiser)
    url = f"/organise/sessions/{scene.session_id}/attendance"
    token = any_csrf_token(client.get(url).get_data(as_text=True))
    body = f"{other.email},,\n{scene.resident.email},,\n"
    response = client.post(
        url,
        data={
            "csv-csrf_token": token,
            "csv-file": (io.BytesIO(body.encode()), "sheet.csv"),
            "csv-submit": "Upload sheet",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    from volunteering.models import Attendance

    with app.app_context():
        assert len(db.session.execute(db.select(Attendance)).all()) == 2


@pytest.fixture
def pending_claims(api, scene, tokens_of, create_user):
    ids = []
    session = api.get(
        f"/api/v1/activities/{scene.activity_id}/sessions", tokens_of(scene.organiser)
    ).get_json()["items"][0]
    for number in range(3):
        resident = create_user(Role.RESIDENT)
        body = api.post(
            f"/api/v1/sessions/{scene.session_id}/attendances",
            tokens_of(scene.organiser),
            json={
                "resident_id": resident.id,
                "checked_in_at": session["starts_at"],
                "checked_out_at": session["ends_at"],
                "idempotency_key": f"k{number}",
            },
        ).get_json()
        ids.append((body["claim"]["id"], resident.id))
    return ids


def test_council_bulk_approves_and_rejects_with_reason(app, client, scene, pending_claims):
    sign_in(client, scene.council)
    html = client.get("/council/claims?flag=manual").get_data(as_text=True)
    assert html.count('name="claim_ids"') == 3
    token = csrf_token_from(html)
    (first, first_resident), (second, second_resident), (third, _) = pending_claims
    response = client.post(
        "/council/claims/approve",
        data={"csrf_token": token, "claim_ids": [str(first), str(second)]},
    )
    assert response.status_code == 302
    assert balance(app, first_resident) == 2 and balance(app, second_resident) == 2
    again = client.post(
        "/council/claims/approve", data={"csrf_token": token, "claim_ids": [str(first)]}
    )
    assert again.status_code == 302
    assert balance(app, first_resident) == 2
    no_reason = client.post(f"/council/claims/{third}/reject", data={"csrf_token": token})
    assert no_reason.status_code == 302
    rejected = client.post(
        f"/council/claims/{third}/reject", data={"csrf_token": token, "reason": "Not there"}
    )
    assert rejected.status_code == 302
    html = client.get("/council/claims?status=rejected").get_data(as_text=True)
    assert "Not there" in html


def test_council_approves_organisations_and_activities_from_queues(client, create_user, app):
    organiser, council = create_user(Role.ORGANISER), create_user(Role.COUNCIL)
    sign_in(client, organiser)
    response = post_form(
        client, "/organise/organisations/new", {"name": "Lunch club", "description": "Food"}
    )
    assert response.status_code == 302
    council_client = app.test_client()
    sign_in(council_client, council)
    html = council_client.get("/council/organisations").get_data(as_text=True)
    assert "Lunch club" in html
    token = csrf_token_from(html)
    organisation_id = re.search(r"/council/organisations/(\d+)/approve", html).group(1)
    council_client.post(
        f"/council/organisations/{organisation_id}/approve", data={"csrf_token": token}
    )
    response = post_form(
        client,
        f"/organise/organisations/{organisation_id}/activities/new",
        {
            "title": "Soup kitchen",
            "description": "Cooking",
            "category": "Food and lunch clubs",
            "location": "Church hall",
            "ward": "Roundhay",
            "credits_per_hour": "2",
            "capacity": "",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[-1500:]
    html = council_client.get("/council/activities?category=Food+and+lunch+clubs").get_data(
        as_text=True
    )
    assert "Soup kitchen" in html
    activity_id = re.search(r"/council/activities/(\d+)/reject", html).group(1)
    council_client.post(
        f"/council/activities/{activity_id}/reject",
        data={"csrf_token": token, "reason": "Needs a risk assessment"},
    )
    page = client.get(f"/organise/activities/{activity_id}").get_data(as_text=True)
    assert "Needs a risk assessment" in page


def test_organiser_schedules_a_session_in_uk_time(client, scene):
    sign_in(client, scene.organiser)
    url = f"/organise/activities/{scene.activity_id}"
    response = post_form(client, url, {"day": "2026-07-01", "starts": "10:00", "ends": "12:00"})
    assert response.status_code == 302, response.get_data(as_text=True)[-1500:]
    html = client.get(url).get_data(as_text=True)
    assert "Wed 1 Jul 2026, 10:00" in html


def test_resident_sees_their_hours_and_a_rejection_reason(app, api, client, scene, tokens_of):
    session = api.get(
        f"/api/v1/activities/{scene.activity_id}/sessions", tokens_of(scene.organiser)
    ).get_json()["items"][0]
    claim = api.post(
        f"/api/v1/sessions/{scene.session_id}/attendances",
        tokens_of(scene.organiser),
        json={
            "resident_id": scene.resident.id,
            "checked_in_at": session["starts_at"],
            "checked_out_at": session["ends_at"],
            "idempotency_key": "h",
        },
    ).get_json()["claim"]
    api.post(
        f"/api/v1/claims/{claim['id']}/reject",
        tokens_of(scene.council),
        json={"reason": "Not on the sheet"},
    )
    sign_in(client, scene.resident)
    html = client.get("/my-hours").get_data(as_text=True)
    assert "Litter pick" in html and "Rejected" in html and "Not on the sheet" in html


def test_organiser_cancels_a_session_from_its_page(client, scene):
    sign_in(client, scene.organiser)
    page = f"/organise/sessions/{scene.session_id}"
    response = post_form(client, f"{page}/cancel", {}, page=page)
    assert response.status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert "Cancelled" in html and "Cancel the session" not in html


def test_staff_printing_a_card_and_scanning_it_are_audited(app, client, scene):
    from core.models import AuditEntry
    from volunteering.tokens import card_number

    sign_in(client, scene.organiser)
    html = client.get(f"/cards?email={scene.resident.email}").get_data(as_text=True)
    assert card_number(scene.resident.id) in html
    post_form(
        client,
        f"/organise/sessions/{scene.session_id}/scan-cards",
        {"card": card_number(scene.resident.id), "nonce": "x"},
    )
    with app.app_context():
        actions = (
            db.session.execute(
                db.select(AuditEntry.action).where(AuditEntry.actor_id == scene.organiser.id)
            )
            .scalars()
            .all()
        )
    assert "card.printed" in actions and "attendance.card_checked_in" in actions
