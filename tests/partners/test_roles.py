"""Who may do what: staff of one partner never see or act for another; residents never
reach the till; only council staff decide on partners."""

from core.models import Role


def redeem(api, token, code, offer_id, key="till-1"):
    return api.post(
        "/api/v1/redemptions",
        token,
        json={"code": code, "offer_id": offer_id, "idempotency_key": key},
    )


def test_staff_of_another_partner_cannot_redeem_for_this_one(
    api, make_partner, resident, new_code, balance_of
):
    mine = make_partner("The Corner Café")
    theirs = make_partner("Leisure Centre")
    response = redeem(api, api.token(theirs.staff), new_code(resident), mine.offer_id)
    assert response.status_code == 403
    assert balance_of(resident) == 10


def test_staff_of_another_partner_cannot_see_its_redemptions_or_cancel_them(
    api, make_partner, resident, new_code
):
    mine = make_partner("The Corner Café")
    theirs = make_partner("Leisure Centre")
    made = redeem(api, api.token(mine.staff), new_code(resident), mine.offer_id).get_json()
    other = api.token(theirs.staff)
    assert api.get(f"/api/v1/partners/{mine.partner_id}/redemptions", other).status_code == 403
    assert api.get(f"/api/v1/redemptions/{made['id']}", other).status_code == 403
    cancel = api.post(f"/api/v1/redemptions/{made['id']}/cancel", other, json={"reason": "x"})
    assert cancel.status_code == 403
    assert api.get(f"/api/v1/partners/{mine.partner_id}", other).status_code == 403
    lookup = api.post(
        "/api/v1/redemption-codes/lookup",
        other,
        json={"code": new_code(resident), "partner_id": mine.partner_id},
    )
    assert lookup.status_code == 403


def test_staff_of_another_partner_cannot_add_or_pause_its_offers(api, make_partner):
    mine = make_partner("The Corner Café")
    theirs = make_partner("Leisure Centre")
    other = api.token(theirs.staff)
    created = api.post(
        f"/api/v1/partners/{mine.partner_id}/offers", other, json={"title": "x", "credit_cost": 1}
    )
    assert created.status_code == 403
    paused = api.call("PATCH", f"/api/v1/offers/{mine.offer_id}", other, json={"status": "paused"})
    assert paused.status_code == 403


def test_residents_cannot_call_till_operations(api, shop, resident, new_code):
    token = api.token(resident)
    code = new_code(resident)
    assert redeem(api, token, code, shop.offer_id).status_code == 403
    lookup = api.post(
        "/api/v1/redemption-codes/lookup", token, json={"code": code, "partner_id": shop.partner_id}
    )
    assert lookup.status_code == 403
    assert api.get(f"/api/v1/partners/{shop.partner_id}/redemptions", token).status_code == 403
    offer = api.post(
        f"/api/v1/partners/{shop.partner_id}/offers", token, json={"title": "x", "credit_cost": 1}
    )
    assert offer.status_code == 403


def test_without_a_token_the_till_gets_401(api, shop):
    response = redeem(api, None, "ABCD-EFGH", shop.offer_id)
    assert response.status_code == 401


def test_partner_staff_cannot_make_spending_codes(api, shop):
    response = api.post("/api/v1/wallet/redemption-codes", api.token(shop.staff), json={})
    assert response.status_code == 403


def test_only_council_approves_partners(api, create_user):
    owner = create_user(Role.PARTNER_STAFF)
    made = api.post(
        "/api/v1/partners", api.token(owner), json={"name": "Bakery", "address": "2 Low Road"}
    )
    assert made.status_code == 201
    body = made.get_json()
    assert body["status"] == "pending"
    assert body["settlement_rate_pence"] > 0
    assert body["payout_method"] == "payment_file"
    path = f"/api/v1/partners/{body['id']}/approve"
    assert api.post(path, api.token(owner), json={}).status_code == 403
    council = api.token(create_user(Role.COUNCIL))
    approved = api.post(path, council)
    assert approved.status_code == 200
    assert approved.get_json()["status"] == "approved"
    again = api.post(path, council, json={})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "not_pending"
