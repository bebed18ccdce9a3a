"""Under pressure on PostgreSQL: many tills at the same instant never overspend a wallet,
never use a code twice and never sell more than the stock."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.extensions import db
from core.models import Role

pytestmark = pytest.mark.postgres


def at_once(app, calls):
    """Run each ``(token, body)`` POST /api/v1/redemptions in its own thread, released
    together by a barrier; return [(status, body)] in order."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        token, body = call
        client = app.test_client()
        barrier.wait()
        response = client.post(
            "/api/v1/redemptions", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


def codes(outcomes):
    return Counter(
        "created" if status == 201 else body["error"]["code"] for status, body in outcomes
    )


def test_32_tills_at_once_against_one_wallet_never_overspend(
    app, api, postgres_required, shop, create_user, give_credits, new_code, balance_of
):
    from rewards.models import CreditLot

    person = create_user(Role.RESIDENT)
    give_credits(person, 7)
    give_credits(person, 6)  # 13 credits in two lots; the coffee costs 2
    token = api.token(shop.staff)
    calls = [
        (token, {"code": new_code(person), "offer_id": shop.offer_id, "idempotency_key": f"t{n}"})
        for n in range(32)
    ]
    outcomes = at_once(app, calls)
    assert all(status < 500 for status, _ in outcomes), outcomes
    assert codes(outcomes) == {"created": 13 // 2, "insufficient_credits": 32 - 13 // 2}
    assert balance_of(person) == 1
    with app.app_context():
        lots = db.session.execute(db.select(CreditLot)).scalars().all()
        assert sum(lot.remaining for lot in lots) == 1
        db.session.remove()


def test_two_tills_submitting_the_same_code_make_one_redemption(
    app, api, postgres_required, make_partner, resident, balance_of, new_code, create_user
):
    from partners.models import Redemption

    shop = make_partner()
    colleague = create_user(Role.PARTNER_STAFF)
    with app.app_context():
        from partners.models import PartnerMembership

        db.session.add(PartnerMembership(partner_id=shop.partner_id, user_id=colleague.id))
        db.session.commit()
        db.session.remove()
    tokens = [api.token(shop.staff), api.token(colleague)]
    for round_ in range(4):
        code = new_code(resident)
        outcomes = at_once(
            app,
            [
                (
                    tokens[n],
                    {"code": code, "offer_id": shop.offer_id, "idempotency_key": f"{n}-{round_}"},
                )
                for n in range(2)
            ],
        )
        assert codes(outcomes) == {"created": 1, "code_used": 1}, outcomes
    assert balance_of(resident) == 10 - 4 * 2
    with app.app_context():
        assert db.session.execute(db.select(db.func.count()).select_from(Redemption)).scalar() == 4
        db.session.remove()


def test_the_same_request_sent_twice_at_once_is_one_redemption_with_one_answer(
    app, api, postgres_required, shop, resident, new_code, balance_of
):
    token = api.token(shop.staff)
    body = {"code": new_code(resident), "offer_id": shop.offer_id, "idempotency_key": "same"}
    outcomes = at_once(app, [(token, body), (token, body)])
    assert [status for status, _ in outcomes] == [201, 201], outcomes
    assert outcomes[0][1]["id"] == outcomes[1][1]["id"]
    assert balance_of(resident) == 8


def test_stock_of_5_with_20_buyers_at_once_sells_5(
    app, api, postgres_required, make_partner, create_user, give_credits, new_code
):
    from partners.models import Offer, Redemption

    shop = make_partner(offers=[("Concert ticket", 1, {"stock_total": 5})])
    token = api.token(shop.staff)
    calls = []
    for n in range(20):
        buyer = create_user(Role.RESIDENT)
        give_credits(buyer, 3)
        body = {"code": new_code(buyer), "offer_id": shop.offer_id, "idempotency_key": f"b{n}"}
        calls.append((token, body))
    outcomes = at_once(app, calls)
    assert codes(outcomes) == {"created": 5, "offer_unavailable": 15}, outcomes
    with app.app_context():
        assert db.session.get(Offer, shop.offer_id).stock_remaining == 0
        assert db.session.execute(db.select(db.func.count()).select_from(Redemption)).scalar() == 5
        db.session.remove()


def test_a_per_resident_limit_holds_at_once(
    app, api, postgres_required, make_partner, resident, new_code, balance_of
):
    shop = make_partner(offers=[("Swim", 1, {"limit_per_resident": 2, "limit_period": "week"})])
    token = api.token(shop.staff)
    calls = [
        (token, {"code": new_code(resident), "offer_id": shop.offer_id, "idempotency_key": f"s{n}"})
        for n in range(8)
    ]
    outcomes = at_once(app, calls)
    assert codes(outcomes) == {"created": 2, "offer_unavailable": 6}, outcomes
    assert balance_of(resident) == 8
