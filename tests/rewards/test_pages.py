"""The wallet page, the gifting page and council's community pots page."""

from __future__ import annotations

import re

from core.models import Role
from rewards import operations as ops
from rewards.wallet import balance_of
from tests.conftest import csrf_token_from, post_form, sign_in
from tests.rewards.conftest import give


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def post_gift(client, data: dict):
    """Fill in the gift page as shown (with its CSRF token and one-time key) and send it."""
    html = client.get("/wallet/give").get_data(as_text=True)
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    return client.post(
        "/wallet/give",
        data={**data, "idempotency_key": key, "csrf_token": csrf_token_from(html)},
    )


def test_wallet_page_shows_balance_expiry_and_history_in_words(client, resident, partner, in_app):
    in_app(give, resident.id, 3, days=20)
    in_app(give, resident.id, 2, days=200)
    in_app(ops.spend, resident.id, partner.id, 1, idempotency_key="s", description="coffee")
    sign_in(client, resident)
    html = text_of(client.get("/wallet"))
    assert "4 credits" in html
    assert re.search(r"2 credits expire in (19|20) days", html)
    assert re.search(r"expires in (19|20) days\)", html) and "2 credits of 3" in html
    assert "\u22121 at The Corner Café: coffee" in html
    assert "+3 for Litter pick, Roundhay Park" in html


def test_wallet_history_pages_with_a_cursor(client, resident, in_app):
    for n in range(23):
        in_app(give, resident.id, 1, key=f"e{n}")
    sign_in(client, resident)
    html = client.get("/wallet").get_data(as_text=True)
    older = re.search(r'href="(/wallet\?before=\d+)"', html)
    assert older, "no link to older entries"
    page_two = text_of(client.get(older.group(1)))
    assert "Earlier history" in page_two
    assert page_two.count("+1 for Litter pick") == 3
    assert client.get("/wallet?before=abc").status_code == 404


def test_wallet_page_is_for_residents_only(client, create_user):
    sign_in(client, create_user(Role.PARTNER_STAFF))
    assert client.get("/wallet").status_code == 403


def test_giving_credits_from_the_gift_page(client, resident, other_resident, in_app):
    in_app(give, resident.id, 5)
    sign_in(client, resident)
    response = post_gift(
        client,
        {"to": "person", "email": other_resident.email, "amount": "2", "message": "Thanks!"},
    )
    assert response.status_code == 302
    assert "You gave 2 credits to" in text_of(client.get("/wallet"))
    assert in_app(balance_of, other_resident.id) == 2


def test_resubmitting_the_same_gift_form_gives_once(client, resident, other_resident, in_app):
    in_app(give, resident.id, 5)
    sign_in(client, resident)
    html = client.get("/wallet/give").get_data(as_text=True)
    key = re.search(r'name="idempotency_key" type="hidden" value="([^"]+)"', html).group(1)
    data = {
        "to": "person",
        "email": other_resident.email,
        "amount": "2",
        "idempotency_key": key,
        "csrf_token": csrf_token_from(html),
    }
    assert client.post("/wallet/give", data=data).status_code == 302
    assert client.post("/wallet/give", data=data).status_code == 302
    assert in_app(balance_of, other_resident.id) == 2


def test_gift_page_explains_refusals(client, resident, other_resident, in_app):
    in_app(give, resident.id, 1)
    sign_in(client, resident)
    response = post_gift(client, {"to": "person", "email": other_resident.email, "amount": "3"})
    assert response.status_code == 400
    assert "Not enough credits" in text_of(response)
    response = post_gift(client, {"to": "person", "email": "nobody@example.org", "amount": "1"})
    assert "No resident has that email address" in text_of(response)
    assert in_app(balance_of, resident.id) == 1


def test_council_opens_a_pot_and_a_resident_gives_to_it(client, create_user, resident, in_app):
    council = create_user(Role.COUNCIL)
    sign_in(client, council)
    response = post_form(
        client, "/council/pots", {"name": "Food bank", "description": "Meals for families"}
    )
    assert response.status_code == 302
    assert "Food bank" in text_of(client.get("/council/pots"))
    client.post(
        "/sign-out",
        data={"csrf_token": csrf_token_from(client.get("/account").get_data(as_text=True))},
    )
    in_app(give, resident.id, 3)
    sign_in(client, resident)
    html = client.get("/wallet/give").get_data(as_text=True)
    pot_value = re.search(r'value="(pot:\d+)"', html).group(1)
    response = post_gift(client, {"to": pot_value, "amount": "2"})
    assert response.status_code == 302
    assert "given to Food bank" in text_of(client.get("/wallet"))


def test_pots_page_is_for_council_only(client, resident):
    sign_in(client, resident)
    assert client.get("/council/pots").status_code == 403
