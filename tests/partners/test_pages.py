"""The partners pages: directory, spending code, till, receipt, cancel, offers, dashboard,
registration and the council's queue, each for the people allowed to use it."""

import re

from core.models import Role
from tests.conftest import csrf_token_from, post_form, sign_in


def any_csrf_token(html: str) -> str:
    """The CSRF token of a page whose forms have prefixes (``approve-csrf_token``)."""
    return re.search(r'name="[a-z-]*csrf_token"[^>]*value="([^"]+)"', html).group(1)


def page(client, path):
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def show_code(client) -> str:
    html = post_form(client, "/spend", {}).get_data(as_text=True)
    match = re.search(r'id="short-code"[^>]*>([A-Z0-9-]+)<', html)
    assert match, html[:2000]
    assert "<svg" in html
    return match.group(1)


def test_directory_lists_approved_offers_and_what_i_can_afford(client, make_partner, resident):
    make_partner("The Corner Café", offers=[("Coffee", 2), ("Banquet", 40)])
    make_partner("Hidden Bakery", approve=False, offers=[("Bun", 1)])
    sign_in(client, resident)
    html = page(client, "/offers")
    assert "Coffee" in html and "Banquet" in html
    assert "Hidden Bakery" not in html
    assert "10 credits" in html
    affordable = page(client, "/offers?affordable=y")
    assert "Coffee" in affordable and "Banquet" not in affordable
    searched = page(client, "/offers?q=banq")
    assert "Banquet" in searched and "Coffee" not in searched


def test_resident_gets_a_code_page_with_qr_countdown_and_refresh(client, resident):
    sign_in(client, resident)
    assert "Show my code" in page(client, "/spend")
    response = post_form(client, "/spend", {})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="short-code"' in html and "<svg" in html
    assert "Get a new code" in html
    assert 'data-seconds="300"' in html
    assert "spend.js" in html
    status_url = re.search(r'data-status-url="([^"]+)"', html).group(1)
    assert client.get(status_url).get_json()["state"] == "live"


def test_code_status_is_private_to_its_resident(client, create_user, resident):
    sign_in(client, resident)
    html = post_form(client, "/spend", {}).get_data(as_text=True)
    status_url = re.search(r'data-status-url="([^"]+)"', html).group(1)
    other = create_user(Role.RESIDENT)
    client.post("/sign-out", data={"csrf_token": csrf_token_from(page(client, "/account"))})
    sign_in(client, other)
    assert client.get(status_url).status_code == 404


def test_till_reads_typed_code_shows_first_name_and_takes_credits(
    app, client, make_partner, resident, balance_of
):
    shop = make_partner(offers=[("Coffee", 2), ("Banquet", 40)])
    resident_client = app.test_client()
    sign_in(resident_client, resident)
    code = show_code(resident_client)

    sign_in(client, shop.staff)
    till = f"/business/{shop.partner_id}/till"
    assert "Scan the code with the camera" in page(client, till)
    checked = post_form(client, till, {"code": code.lower()})
    html = checked.get_data(as_text=True)
    assert checked.status_code == 200, html[:3000]
    assert "Serving Robin" in html
    assert "Coffee" in html
    assert "Banquet: Not enough credits" in html
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    confirm = client.post(
        f"/business/{shop.partner_id}/till/confirm",
        data={
            "csrf_token": csrf_token_from(html),
            "code": code,
            "idempotency_key": key,
            "offer_id": str(shop.offer_ids[0]),
        },
    )
    assert confirm.status_code == 302
    receipt = page(client, confirm.headers["Location"])
    assert "2 credits taken" in receipt and "Coffee for Robin" in receipt
    assert balance_of(resident) == 8

    status_url = re.search(
        r'data-status-url="([^"]+)"',
        post_form(resident_client, "/spend", {}).get_data(as_text=True),
    )
    assert status_url  # a new code works after spending

    again = post_form(client, till, {"code": code})
    assert again.status_code == 400
    assert "already been used" in again.get_data(as_text=True)


def test_till_refuses_a_wrong_code_in_words(client, shop):
    sign_in(client, shop.staff)
    response = post_form(client, f"/business/{shop.partner_id}/till", {"code": "ZZZZ-ZZZZ"})
    assert response.status_code == 400
    assert "This code is not right" in response.get_data(as_text=True)


def test_staff_cancel_from_the_receipt(app, client, shop, resident, balance_of, api, new_code):
    made = api.post(
        "/api/v1/redemptions",
        api.token(shop.staff),
        json={"code": new_code(resident), "offer_id": shop.offer_id, "idempotency_key": "x"},
    ).get_json()
    sign_in(client, shop.staff)
    path = f"/business/{shop.partner_id}/redemptions/{made['id']}"
    assert "Made a mistake?" in page(client, path)
    response = post_form(client, path, {"reason": "Wrong offer"})
    assert response.status_code == 302
    assert "cancelled" in page(client, path)
    assert balance_of(resident) == 10


def test_staff_of_another_partner_are_refused_its_pages(client, make_partner):
    mine = make_partner("The Corner Café")
    theirs = make_partner("Leisure Centre")
    sign_in(client, theirs.staff)
    for path in ["", "/till", "/offers", "/staff", "/redemptions.csv", "/offers/new"]:
        assert client.get(f"/business/{mine.partner_id}{path}").status_code == 403, path


def test_residents_cannot_open_the_till(client, shop, resident):
    sign_in(client, resident)
    assert client.get(f"/business/{shop.partner_id}/till").status_code == 403
    assert client.get("/business/till").status_code == 403
    assert client.get("/council/partners").status_code == 403


def test_staff_add_pause_and_change_offers(client, shop):
    sign_in(client, shop.staff)
    new = f"/business/{shop.partner_id}/offers/new"
    bad = post_form(client, new, {"title": "", "credit_cost": "0", "days": ["0"]})
    assert bad.status_code == 400
    made = post_form(
        client,
        new,
        {
            "title": "Swim",
            "credit_cost": "3",
            "days": ["5", "6"],
            "available_from": "09:00",
            "available_until": "12:00",
            "limit_per_resident": "1",
            "limit_period": "week",
            "stock_total": "20",
        },
    )
    assert made.status_code == 302, made.get_data(as_text=True)[:3000]
    listing = page(client, f"/business/{shop.partner_id}/offers")
    assert "Swim" in listing and "Saturdays, Sundays" in listing and "20 left" in listing
    paused = post_form(
        client,
        f"/business/{shop.partner_id}/offers/{shop.offer_id}/pause",
        {},
        page=f"/business/{shop.partner_id}/offers",
    )
    assert paused.status_code == 302
    assert "Paused" in page(client, f"/business/{shop.partner_id}/offers")


def test_dashboard_filters_and_csv(client, shop, resident, api, new_code):
    token = api.token(shop.staff)
    for key in "ab":
        api.post(
            "/api/v1/redemptions",
            token,
            json={"code": new_code(resident), "offer_id": shop.offer_id, "idempotency_key": key},
        )
    sign_in(client, shop.staff)
    html = page(client, f"/business/{shop.partner_id}")
    assert "Credits taken this month" in html and "4 (2 redemptions)" in html
    assert "£4.00" in html
    csv_response = client.get(f"/business/{shop.partner_id}/redemptions.csv?status=completed")
    assert csv_response.status_code == 200
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("redemption_id,created_at,offer,credits")
    assert len(lines) == 3
    none = client.get(f"/business/{shop.partner_id}/redemptions.csv?status=cancelled")
    assert len(none.get_data(as_text=True).strip().splitlines()) == 1


def test_registration_and_council_approval_through_the_pages(app, client, create_user):
    owner = create_user(Role.RESIDENT, name="Pat Owner")
    sign_in(client, owner)
    response = post_form(
        client,
        "/business/register",
        {"name": "Pat's Pies", "address": "4 Oak Road", "category": "Café", "ward": ""},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert "Waiting for approval" in page(client, "/business")

    council_client = app.test_client()
    sign_in(council_client, create_user(Role.COUNCIL))
    queue = page(council_client, "/council/partners")
    assert "Pat&#39;s Pies" in queue and "1 waiting for approval" in queue
    assert "&lt;a" not in queue
    partner_id = re.search(r"/council/partners/(\d+)", queue).group(1)
    path = f"/council/partners/{partner_id}"
    html = page(council_client, path)
    approved = council_client.post(
        path, data={"csrf_token": any_csrf_token(html), "approve-submit": "y"}
    )
    assert approved.status_code == 302
    assert "Approved" in page(council_client, path)
    rate = council_client.post(
        path,
        data={
            "csrf_token": any_csrf_token(html),
            "rate-settlement_rate_pence": "75",
            "rate-submit": "y",
        },
    )
    assert rate.status_code == 302
    assert "75" in page(council_client, path)

    sign_in(client, owner)  # the new role needs a fresh sign-in
    assert client.get("/business").status_code == 302


def test_staff_add_a_colleague(client, shop, create_user):
    colleague = create_user(Role.RESIDENT, email="kim@example.org")
    sign_in(client, shop.staff)
    path = f"/business/{shop.partner_id}/staff"
    assert "Change how you are paid" in page(client, path)
    added = post_form(client, path, {"email": colleague.email})
    assert added.status_code == 302
    assert "kim@example.org" in page(client, path)
    # Without an account: a pending invitation, shown on the page (tests/core/test_invitations.py)
    invited = post_form(client, path, {"email": "nobody@example.org"})
    assert invited.status_code == 302
    assert "Invited, no account yet" in page(client, path)


def test_guessing_codes_at_the_till_page_is_rate_limited(client, shop):
    sign_in(client, shop.staff)
    till = f"/business/{shop.partner_id}/till"
    statuses = [
        post_form(client, till, {"code": f"ABCD-EF{c}{d}"}).status_code
        for c in "2345"
        for d in "23456789"
    ]
    assert statuses[0] == 400
    assert statuses[-1] == 429
