"""Registering, approving, rejecting partners; offers; cancelling and reversing."""

from datetime import timedelta

import time_machine

from core.extensions import db
from core.models import AuditEntry, Role
from core.timeutil import utcnow


def redeem(api, token, code, offer_id, key="till-1"):
    return api.post(
        "/api/v1/redemptions",
        token,
        json={"code": code, "offer_id": offer_id, "idempotency_key": key},
    )


def test_registration_then_approval_gives_the_registrant_the_staff_role(api, create_user):
    applicant = create_user(Role.RESIDENT)
    token = api.token(applicant)
    made = api.post(
        "/api/v1/partners",
        token,
        json={
            "name": "Roundhay Books",
            "address": "3 Street Lane",
            "category": "Shop",
            "ward": "Roundhay",
            "opening_hours": "Mon-Sat 9-5",
            "contact_phone": "0113 000 0000",
        },
    )
    assert made.status_code == 201, made.get_json()
    partner_id = made.get_json()["id"]
    listed = api.get("/api/v1/partners", token).get_json()
    assert [p["id"] for p in listed["items"]] == [partner_id]
    council = api.token(create_user(Role.COUNCIL))
    assert api.post(f"/api/v1/partners/{partner_id}/approve", council).status_code == 200
    me = api.get("/api/v1/me", api.token(applicant)).get_json()
    assert "partner_staff" in me["roles"]


def test_rejection_needs_a_reason_and_is_audited(app, api, create_user):
    owner = create_user(Role.PARTNER_STAFF)
    made = api.post("/api/v1/partners", api.token(owner), json={"name": "X", "address": "Y"})
    partner_id = made.get_json()["id"]
    council = api.token(create_user(Role.COUNCIL))
    path = f"/api/v1/partners/{partner_id}/reject"
    assert api.post(path, council, json={}).status_code == 400
    rejected = api.post(path, council, json={"reason": "Not in the council area"})
    assert rejected.status_code == 200
    assert rejected.get_json()["status_reason"] == "Not in the council area"
    with app.app_context():
        entry = db.session.execute(
            db.select(AuditEntry).where(AuditEntry.action == "partner.rejected")
        ).scalar_one()
        assert entry.reason == "Not in the council area"


def test_council_changes_the_settlement_rate_with_an_audit_entry(app, api, shop):
    council = api.token(shop.council)
    response = api.call(
        "PUT",
        f"/api/v1/partners/{shop.partner_id}/settlement-rate",
        council,
        json={"settlement_rate_pence": 80},
    )
    assert response.status_code == 200
    assert response.get_json()["settlement_rate_pence"] == 80
    with app.app_context():
        entry = db.session.execute(
            db.select(AuditEntry).where(AuditEntry.action == "partner.settlement_rate_changed")
        ).scalar_one()
        assert entry.details["to"] == 80


def test_offers_are_listed_for_residents_and_validated_for_staff(api, shop, resident):
    staff = api.token(shop.staff)
    bad = api.post(
        f"/api/v1/partners/{shop.partner_id}/offers", staff, json={"title": "", "credit_cost": 0}
    )
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["fields"]) >= {"title", "credit_cost"}
    made = api.post(
        f"/api/v1/partners/{shop.partner_id}/offers",
        staff,
        json={
            "title": "Swim",
            "credit_cost": 3,
            "days": "56",
            "available_from": "09:00:00",
            "available_until": "12:00:00",
            "stock_total": 10,
        },
    )
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["stock_remaining"] == 10
    api.call("PATCH", f"/api/v1/offers/{shop.offer_id}", staff, json={"status": "paused"})
    listed = api.get(f"/api/v1/partners/{shop.partner_id}/offers", api.token(resident))
    assert [o["title"] for o in listed.get_json()["items"]] == ["Swim"]
    staff_view = api.get(f"/api/v1/partners/{shop.partner_id}/offers", staff).get_json()
    assert len(staff_view["items"]) == 2


def test_pending_partner_offers_are_hidden_from_residents(api, make_partner, resident):
    pending = make_partner("Not Yet", approve=False, offers=())
    response = api.get(f"/api/v1/partners/{pending.partner_id}/offers", api.token(resident))
    assert response.status_code == 404


def test_staff_cancel_within_the_window_gives_credits_back(
    app, api, shop, resident, new_code, balance_of
):
    token = api.token(shop.staff)
    made = redeem(api, token, new_code(resident), shop.offer_id).get_json()
    assert balance_of(resident) == 8
    path = f"/api/v1/redemptions/{made['id']}/cancel"
    cancelled = api.post(path, token, json={"reason": "Rang up the wrong offer"})
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["status"] == "cancelled"
    assert balance_of(resident) == 10
    again = api.post(path, token, json={"reason": "again"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "already_cancelled"
    with app.app_context():
        assert db.session.execute(
            db.select(AuditEntry).where(AuditEntry.action == "redemption.cancelled")
        ).scalar_one()


def test_cancel_gives_lots_back_with_their_original_expiry(
    app, api, shop, create_user, give_credits, new_code
):
    from rewards.models import CreditLot

    person = create_user(Role.RESIDENT)
    expiry = utcnow() + timedelta(days=40)
    give_credits(person, 2, expires_at=expiry)
    token = api.token(shop.staff)
    made = redeem(api, token, new_code(person), shop.offer_id).get_json()
    api.post(f"/api/v1/redemptions/{made['id']}/cancel", token, json={"reason": "Mistake"})
    with app.app_context():
        lot = db.session.execute(db.select(CreditLot)).scalar_one()
        assert lot.remaining == 2
        assert abs((lot.expires_at - expiry).total_seconds()) < 1


def test_after_the_window_only_council_can_reverse(api, shop, resident, new_code, balance_of):
    token = api.token(shop.staff)
    made = redeem(api, token, new_code(resident), shop.offer_id).get_json()
    path = f"/api/v1/redemptions/{made['id']}/cancel"
    with time_machine.travel(utcnow() + timedelta(hours=2)):
        council = api.token(shop.council)
        late = api.post(path, token, json={"reason": "Too late"})
        assert late.status_code == 409
        assert late.get_json()["error"]["code"] == "cancel_window_passed"
        reversed_ = api.post(path, council, json={"reason": "Resident complained"})
        assert reversed_.status_code == 200
    assert balance_of(resident) == 10


def test_cancelling_gives_stock_back(api, make_partner, resident, new_code):
    shop = make_partner(offers=[("Tickets", 1, {"stock_total": 1})])
    token = api.token(shop.staff)
    made = redeem(api, token, new_code(resident), shop.offer_id, key="a").get_json()
    api.post(f"/api/v1/redemptions/{made['id']}/cancel", token, json={"reason": "Mistake"})
    assert redeem(api, token, new_code(resident), shop.offer_id, key="b").status_code == 201


def test_partner_redemptions_are_paginated_newest_first(
    api, shop, create_user, give_credits, new_code
):
    token = api.token(shop.staff)
    person = create_user(Role.RESIDENT)
    give_credits(person, 20)
    ids = [
        redeem(api, token, new_code(person), shop.offer_id, key=str(n)).get_json()["id"]
        for n in range(3)
    ]
    page = api.get(f"/api/v1/partners/{shop.partner_id}/redemptions?limit=2", token).get_json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2]
    rest = api.get(
        f"/api/v1/partners/{shop.partner_id}/redemptions?limit=2&cursor={page['next_cursor']}",
        token,
    ).get_json()
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None
    council = api.get(f"/api/v1/partners/{shop.partner_id}/redemptions", api.token(shop.council))
    assert council.status_code == 200
    bad = api.get(f"/api/v1/partners/{shop.partner_id}/redemptions?cursor=zz", token)
    assert bad.status_code == 400


def test_demo_data_has_an_approved_partner_with_two_offers_and_is_idempotent(app, api):
    from core.demo import load_demo_data
    from partners.models import Offer, Partner

    with app.app_context():
        load_demo_data()
        db.session.commit()
        load_demo_data()
        db.session.commit()
        partners = db.session.execute(db.select(Partner)).scalars().all()
        assert [(p.name, p.status) for p in partners] == [("The Corner Café", "approved")]
        assert db.session.execute(db.select(db.func.count()).select_from(Offer)).scalar() == 2
        db.session.remove()
    login = {"email": "partner@example.org", "password": "demo-password"}
    token = api.client.post("/api/v1/auth/token", json=login).get_json()["token"]
    mine = api.get("/api/v1/partners", token).get_json()["items"]
    assert [p["name"] for p in mine] == ["The Corner Café"]


def test_a_settled_redemption_cannot_be_cancelled_and_the_dashboard_counts_it(
    app, api, client, shop, resident, new_code
):
    from partners.settlement import settle_partner
    from tests.conftest import sign_in

    token = api.token(shop.staff)
    made = redeem(api, token, new_code(resident), shop.offer_id).get_json()
    now = utcnow()
    with app.app_context():
        settlement = settle_partner(
            shop.partner_id,
            now - timedelta(days=7),
            now + timedelta(seconds=1),
            now + timedelta(seconds=1),
            now,
        )
        assert settlement is not None
        db.session.commit()
        db.session.remove()
    council = api.token(shop.council)
    refused = api.post(
        f"/api/v1/redemptions/{made['id']}/cancel", council, json={"reason": "Too late"}
    )
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "already_settled"
    sign_in(client, shop.staff)
    html = client.get(f"/business/{shop.partner_id}").get_data(as_text=True)
    assert "Owed, not yet paid" in html and "£2.00" in html


def test_offer_directory_api_filters_and_knows_what_i_can_afford(api, make_partner, resident):
    make_partner("The Corner Café", offers=[("Coffee", 2), ("Banquet", 40)])
    make_partner(
        "Leisure Centre",
        category="Leisure and sport",
        ward="Gipton and Harehills",
        offers=[("Swim", 3)],
    )
    make_partner("Hidden Bakery", approve=False, offers=[("Bun", 1)])
    token = api.token(resident)

    def titles(query=""):
        response = api.get(f"/api/v1/offers{query}", token)
        assert response.status_code == 200, response.get_json()
        return sorted(offer["title"] for offer in response.get_json()["items"])

    assert titles() == ["Banquet", "Coffee", "Swim"]
    assert titles("?affordable=true") == ["Coffee", "Swim"]
    assert titles("?category=Leisure+and+sport") == ["Swim"]
    assert titles("?ward=Roundhay") == ["Banquet", "Coffee"]
    assert titles("?q=coff") == ["Coffee"]
    assert api.get("/api/v1/offers?limit=0", token).status_code == 400
