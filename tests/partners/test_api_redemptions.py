"""POST /api/v1/redemptions and the codes it takes: once only, never below zero, replays."""

from datetime import timedelta

import time_machine

from core.models import Role
from core.timeutil import utcnow


def redeem(api, token, code, offer_id, key="till-1"):
    return api.post(
        "/api/v1/redemptions",
        token,
        json={"code": code, "offer_id": offer_id, "idempotency_key": key},
    )


def error_code(response):
    return response.get_json()["error"]["code"]


def test_resident_gets_a_short_one_time_code_with_a_qr(api, resident):
    response = api.post("/api/v1/wallet/redemption-codes", api.token(resident), json={})
    assert response.status_code == 201
    body = response.get_json()
    code = body["code"]
    assert len(code.replace("-", "")) == 8
    assert not set(code) & set("0O1IL")
    assert body["qr_svg"].startswith("<svg")
    assert "expires_at" in body


def test_codes_are_not_stored_in_the_clear(app, api, resident, new_code):
    from core.extensions import db
    from partners.models import RedemptionCode

    code = new_code(resident)
    with app.app_context():
        stored = db.session.execute(db.select(RedemptionCode)).scalar_one()
        assert code.replace("-", "") not in stored.code_digest
        assert stored.code_digest != code


def test_partner_staff_redeem_a_code_and_the_credits_move(
    api, shop, resident, new_code, balance_of
):
    token = api.token(shop.staff)
    response = redeem(api, token, new_code(resident), shop.offer_id)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["credits"] == 2
    assert body["partner_id"] == shop.partner_id
    assert body["offer_id"] == shop.offer_id
    assert body["description"] == "The Corner Café: Coffee"
    assert body["resident_first_name"] == "Robin"
    assert balance_of(resident) == 8


def test_typed_code_in_lower_case_with_spaces_works(api, shop, resident, new_code, balance_of):
    code = new_code(resident).lower().replace("-", " ")
    response = redeem(api, api.token(shop.staff), f"  {code} ", shop.offer_id)
    assert response.status_code == 201, response.get_json()
    assert balance_of(resident) == 8


def test_replay_with_same_key_returns_the_first_answer_and_spends_once(
    api, shop, resident, new_code, balance_of
):
    token = api.token(shop.staff)
    code = new_code(resident)
    first = redeem(api, token, code, shop.offer_id, key="k-1")
    second = redeem(api, token, code, shop.offer_id, key="k-1")
    assert first.status_code == 201
    assert second.status_code == 201
    assert second.get_json() == first.get_json()
    assert balance_of(resident) == 8


def test_same_key_with_another_body_is_an_idempotency_conflict(
    api, make_partner, resident, new_code
):
    shop = make_partner(offers=[("Coffee", 2), ("Cake", 3)])
    token = api.token(shop.staff)
    code = new_code(resident)
    assert redeem(api, token, code, shop.offer_ids[0], key="k-1").status_code == 201
    response = redeem(api, token, code, shop.offer_ids[1], key="k-1")
    assert response.status_code == 409
    assert error_code(response) == "idempotency_conflict"
    other = redeem(api, token, new_code(resident), shop.offer_ids[0], key="k-1")
    assert other.status_code == 409
    assert error_code(other) == "idempotency_conflict"


def test_a_used_code_is_refused_with_code_used(api, shop, resident, new_code, balance_of):
    token = api.token(shop.staff)
    code = new_code(resident)
    assert redeem(api, token, code, shop.offer_id, key="a").status_code == 201
    response = redeem(api, token, code, shop.offer_id, key="b")
    assert response.status_code == 409
    assert error_code(response) == "code_used"
    assert "new code" in response.get_json()["error"]["message"]
    assert balance_of(resident) == 8


def test_an_expired_code_is_refused_with_code_expired(api, shop, resident, new_code, balance_of):
    token = api.token(shop.staff)
    code = new_code(resident)
    with time_machine.travel(utcnow() + timedelta(minutes=6)):
        response = redeem(api, token, code, shop.offer_id)
    assert response.status_code == 422
    assert error_code(response) == "code_expired"
    assert balance_of(resident) == 10


def test_an_unknown_code_is_refused_with_code_invalid(api, shop, resident):
    token = api.token(shop.staff)
    for code in ["ABCD-EFGH", "nonsense", "", "0000-0000", "A" * 64]:
        response = redeem(api, token, code, shop.offer_id)
        assert response.status_code in (400, 422), code
        if code:
            assert error_code(response) == "code_invalid", code


def test_not_enough_credits_is_refused_and_the_code_still_works(
    api, make_partner, create_user, give_credits, new_code, balance_of
):
    shop = make_partner(offers=[("Lunch", 5), ("Coffee", 2)])
    poor = create_user(Role.RESIDENT)
    give_credits(poor, 3)
    token = api.token(shop.staff)
    code = new_code(poor)
    response = redeem(api, token, code, shop.offer_ids[0], key="a")
    assert response.status_code == 422
    assert error_code(response) == "insufficient_credits"
    assert redeem(api, token, code, shop.offer_ids[1], key="b").status_code == 201
    assert balance_of(poor) == 1


def test_spending_uses_the_lots_that_expire_first(
    app, api, shop, create_user, give_credits, new_code
):
    from core.extensions import db
    from rewards.models import CreditLot

    person = create_user(Role.RESIDENT)
    give_credits(person, 2, expires_at=utcnow() + timedelta(days=300))
    give_credits(person, 2, expires_at=utcnow() + timedelta(days=30))
    assert redeem(api, api.token(shop.staff), new_code(person), shop.offer_id).status_code == 201
    with app.app_context():
        lots = db.session.execute(db.select(CreditLot).order_by(CreditLot.expires_at)).scalars()
        assert [lot.remaining for lot in lots] == [0, 2]


def test_paused_offer_is_unavailable(api, shop, resident, new_code):
    token = api.token(shop.staff)
    paused = api.call("PATCH", f"/api/v1/offers/{shop.offer_id}", token, json={"status": "paused"})
    assert paused.status_code == 200
    response = redeem(api, token, new_code(resident), shop.offer_id)
    assert response.status_code == 422
    assert error_code(response) == "offer_unavailable"


def test_missing_offer_is_offer_unavailable_404(api, shop, resident, new_code):
    response = redeem(api, api.token(shop.staff), new_code(resident), 999_999)
    assert response.status_code == 404
    assert error_code(response) == "offer_unavailable"


def test_offer_limit_per_resident_per_period_holds(
    api, make_partner, resident, new_code, balance_of
):
    shop = make_partner(offers=[("Swim", 1, {"limit_per_resident": 1, "limit_period": "day"})])
    token = api.token(shop.staff)
    assert redeem(api, token, new_code(resident), shop.offer_id, key="a").status_code == 201
    response = redeem(api, token, new_code(resident), shop.offer_id, key="b")
    assert response.status_code == 422
    assert error_code(response) == "offer_unavailable"
    assert "once a day" in response.get_json()["error"]["message"]
    assert balance_of(resident) == 9


def test_offer_stock_runs_out(api, make_partner, create_user, give_credits, new_code):
    shop = make_partner(offers=[("Tickets", 1, {"stock_total": 1})])
    token = api.token(shop.staff)
    first, second = create_user(Role.RESIDENT), create_user(Role.RESIDENT)
    give_credits(first, 2)
    give_credits(second, 2)
    assert redeem(api, token, new_code(first), shop.offer_id, key="a").status_code == 201
    response = redeem(api, token, new_code(second), shop.offer_id, key="b")
    assert response.status_code == 422
    assert error_code(response) == "offer_unavailable"


def test_offer_outside_its_days_is_unavailable(api, make_partner, resident, new_code):
    today = utcnow().astimezone(__import__("zoneinfo").ZoneInfo("Europe/London")).weekday()
    other_day = str((today + 1) % 7)
    shop = make_partner(offers=[("Tuesday tea", 1, {"days": other_day})])
    response = redeem(api, api.token(shop.staff), new_code(resident), shop.offer_id)
    assert response.status_code == 422
    assert error_code(response) == "offer_unavailable"


def test_suspended_partner_cannot_take_credits(api, shop, resident, new_code):
    council = api.token(shop.council)
    suspended = api.post(
        f"/api/v1/partners/{shop.partner_id}/suspend", council, json={"reason": "Complaints"}
    )
    assert suspended.status_code == 200
    response = redeem(api, api.token(shop.staff), new_code(resident), shop.offer_id)
    assert response.status_code == 422
    assert error_code(response) == "offer_unavailable"


def test_staff_cannot_take_their_own_code(api, make_partner, create_user, give_credits, new_code):
    both = create_user(Role.PARTNER_STAFF, Role.RESIDENT)
    give_credits(both, 5)
    shop = make_partner(staff=both)
    response = redeem(api, api.token(both), new_code(both), shop.offer_id)
    assert response.status_code == 403
    assert error_code(response) == "own_code"


def test_till_lookup_shows_first_name_and_affordable_offers_without_spending(
    api, make_partner, resident, new_code, balance_of
):
    shop = make_partner(offers=[("Coffee", 2), ("Feast", 50)])
    code = new_code(resident)
    response = api.post(
        "/api/v1/redemption-codes/lookup",
        api.token(shop.staff),
        json={"code": code, "partner_id": shop.partner_id},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["first_name"] == "Robin"
    assert [offer["title"] for offer in body["offers"]] == ["Coffee"]
    assert balance_of(resident) == 10
    assert redeem(api, api.token(shop.staff), code, shop.offer_ids[0]).status_code == 201


def test_guessing_codes_is_rate_limited(api, shop):
    token = api.token(shop.staff)
    statuses = [
        redeem(api, token, f"ABCD-EF{c}{d}", shop.offer_id, key=f"{c}{d}").status_code
        for c in "23456"
        for d in "2345678"
    ]
    assert statuses[0] == 422
    assert statuses[-1] == 429
