"""The one-round-trip redemption (PostgreSQL) writes what ``redeem`` writes, step by step.

Two residents with the same credits (two lots, the sooner-expiring one too small alone)
redeem the same offer: one through ``civic_redeem_at_once``, one with it switched off. The
rows each redemption wrote, named relative to its resident, must be the same; and the
cases the function leaves to ``redeem`` must reach it.
"""

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.extensions import db
from core.models import Role
from core.timeutil import utcnow
from partners import operations
from partners.models import Redemption, RedemptionCode
from rewards.models import Account, CreditLot, Entry, LotMovement, Transaction


@pytest.fixture
def fast_calls(monkeypatch):
    """What each ``redeem_at_once`` call answered (a redemption, or None for step by step)."""
    calls = []
    real = operations.redeem_at_once

    def spy(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(operations, "redeem_at_once", spy)
    return calls


def redeem(api, token, code, offer_id, key):
    return api.post(
        "/api/v1/redemptions",
        token,
        json={"code": code, "offer_id": offer_id, "idempotency_key": key},
    )


def written_by(app, redemption_id: int) -> dict:
    """Every row the redemption wrote, with ids and times named relative to it."""
    with app.app_context():
        redemption = db.session.get(Redemption, redemption_id)
        wallet = db.session.execute(
            select(Account).where(Account.key == f"user:{redemption.resident_id}")
        ).scalar_one()
        partner = db.session.execute(
            select(Account).where(Account.key == f"partner:{redemption.partner_id}")
        ).scalar_one()
        lots = (
            db.session.execute(
                select(CreditLot)
                .where(CreditLot.account_id == wallet.id)
                .order_by(CreditLot.expires_at, CreditLot.id)
            )
            .scalars()
            .all()
        )
        names = {wallet.id: "wallet", partner.id: "partner"}
        lot_names = {lot.id: f"lot{n}" for n, lot in enumerate(lots)}
        transaction = db.session.get(Transaction, redemption.transaction_id)
        when = redemption.created_at
        code = db.session.get(RedemptionCode, redemption.code_id)
        entries = db.session.execute(
            select(Entry).where(Entry.transaction_id == transaction.id).order_by(Entry.id)
        ).scalars()
        movements = db.session.execute(
            select(LotMovement)
            .where(LotMovement.transaction_id == transaction.id)
            .order_by(LotMovement.id)
        ).scalars()
        written = {
            "code": (code.resident_id == redemption.resident_id, code.used_at == when),
            "transaction": {
                "kind": transaction.kind,
                "key": transaction.idempotency_key
                == operations.ledger_key("redemption", redemption.partner_id, "till-key"),
                "request_hash": transaction.request_hash
                == operations.ledger()._fingerprint(
                    "spend", redemption.resident_id, partner.id, redemption.credits
                ),
                "amount": transaction.amount,
                "description": transaction.description,
                "reason": transaction.reason,
                "source": transaction.source,
                "actor": transaction.actor_id == redemption.staff_id,
                "reverses": transaction.reverses_id,
                # redeem's spend reads the clock again: the same moment, give or take.
                "at": abs(transaction.created_at - when) < timedelta(seconds=5),
            },
            "entries": [(names[e.account_id], e.amount, e.balance_after, e.memo) for e in entries],
            "movements": [(lot_names[m.lot_id], m.amount) for m in movements],
            "lots": [(lot.amount, lot.remaining) for lot in lots],
            "balances": (wallet.balance, partner.balance),
            "redemption": {
                "offer_id": redemption.offer_id,
                "credits": redemption.credits,
                "rate": redemption.settlement_rate_pence,
                "description": redemption.description,
                "status": redemption.status,
                "key": redemption.idempotency_key,
                "cancelled": (redemption.cancelled_at, redemption.reversal_transaction_id),
            },
        }
        db.session.remove()
    return written


def test_at_once_writes_exactly_what_redeem_writes(
    app, api, make_partner, create_user, give_credits, new_code, fast_calls, postgres_required
):
    shop = make_partner("Tea Room", offers=(("Pot of tea", 4),))
    soon, later = utcnow() + timedelta(days=3), utcnow() + timedelta(days=300)
    residents = [create_user(Role.RESIDENT, name=f"Alex Resident{n}") for n in (1, 2, 3)]
    for resident in residents:
        give_credits(resident, 3, expires_at=soon)
        give_credits(resident, 5, expires_at=later)
    token = api.token(shop.staff)
    # The partner's first redemption opens its ledger account: that one is step by step.
    opening = redeem(api, token, new_code(residents[2]), shop.offer_id, "till-key-0")
    assert opening.status_code == 201 and fast_calls[-1] is None

    fast = redeem(api, token, new_code(residents[0]), shop.offer_id, "till-key")
    assert fast.status_code == 201, fast.get_json()
    assert fast_calls[-1] is not None  # done in one round trip
    partner_after_fast = written_by(app, fast.get_json()["id"])["balances"][1]

    operations_redeem_at_once = operations.redeem_at_once
    operations.redeem_at_once = lambda *args, **kwargs: None
    try:
        slow = redeem(api, token, new_code(residents[1]), shop.offer_id, "till-key-2")
    finally:
        operations.redeem_at_once = operations_redeem_at_once
    assert slow.status_code == 201, slow.get_json()

    fast_rows = written_by(app, fast.get_json()["id"])
    slow_rows = written_by(app, slow.get_json()["id"])
    # The partner's balance moved on with the second redemption; the rest is the same.
    assert fast_rows["entries"][1][2] == partner_after_fast == 8
    assert slow_rows["entries"][1][2] == 12
    fast_rows["entries"][1] = slow_rows["entries"][1] = None
    fast_rows["balances"] = (fast_rows["balances"][0], None)
    slow_rows["balances"] = (slow_rows["balances"][0], None)
    slow_rows["transaction"]["key"] = fast_rows["transaction"]["key"]  # "till-key-2"
    slow_rows["redemption"]["key"] = fast_rows["redemption"]["key"]
    assert fast_rows == slow_rows
    assert fast_rows["movements"] == [("lot0", -3), ("lot1", -1)]
    assert fast_rows["lots"] == [(3, 0), (5, 4)]
    assert fast_rows["entries"][0] == ("wallet", -4, 4, "at Tea Room: Tea Room: Pot of tea")
    body = {k: v for k, v in fast.get_json().items() if k not in ("id", "transaction_id")}
    other = {k: v for k, v in slow.get_json().items() if k not in ("id", "transaction_id")}
    body.pop("created_at"), other.pop("created_at")
    assert body == other


def test_what_it_leaves_to_redeem_still_answers_as_before(
    app, api, make_partner, create_user, give_credits, new_code, fast_calls, postgres_required
):
    """A stock, a replay, a used code and too few credits: step by step, same answers."""
    shop = make_partner("Bakery", offers=(("Bun", 2, {"stock_total": 1}), ("Cake", 30)))
    bun, cake = shop.offer_ids
    resident = create_user(Role.RESIDENT, name="Jo Resident")
    give_credits(resident, 10)
    token = api.token(shop.staff)

    code = new_code(resident)
    first = redeem(api, token, code, bun, "k-1")
    assert first.status_code == 201 and fast_calls[-1] is None  # a stock is counted by redeem
    again = redeem(api, token, code, bun, "k-1")
    assert again.status_code == 201 and again.get_json()["id"] == first.get_json()["id"]
    assert redeem(api, token, code, bun, "k-2").get_json()["error"]["code"] == "code_used"
    poor = redeem(api, token, new_code(resident), cake, "k-3")
    assert poor.status_code == 422 and poor.get_json()["error"]["code"] == "insufficient_credits"
    assert all(call is None for call in fast_calls)


def test_a_key_used_before_is_answered_by_redeem(
    app, api, shop, resident, new_code, fast_calls, postgres_required
):
    token = api.token(shop.staff)
    assert redeem(api, token, new_code(resident), shop.offer_id, "opening").status_code == 201
    first = redeem(api, token, new_code(resident), shop.offer_id, "same-key")
    assert first.status_code == 201 and fast_calls[-1] is not None
    # The same key with another code: the function's insert meets the key and is undone.
    other = redeem(api, token, new_code(resident), shop.offer_id, "same-key")
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "idempotency_conflict"
    assert fast_calls[-1] is None
    with app.app_context():
        used = db.session.execute(
            select(RedemptionCode).where(RedemptionCode.used_at.is_not(None))
        ).scalars()
        assert len(list(used)) == 2  # the third code was given back


def test_at_once_under_pressure_never_overspends_and_the_ledger_verifies(
    app, api, shop, create_user, give_credits, new_code, balance_of, fast_calls, postgres_required
):
    """32 tills at the same instant against one wallet, all on the one-round-trip path (the
    partner's account is open): exactly what the credits cover, then every invariant holds."""
    from rewards.verify import verify_ledger
    from tests.partners.test_concurrency import at_once, codes

    opener = create_user(Role.RESIDENT)
    give_credits(opener, 2)
    token = api.token(shop.staff)
    assert redeem(api, token, new_code(opener), shop.offer_id, "open").status_code == 201
    person = create_user(Role.RESIDENT)
    give_credits(person, 7, expires_at=utcnow() + timedelta(days=5))
    give_credits(person, 6)  # 13 credits in two lots; the coffee costs 2
    calls = [
        (token, {"code": new_code(person), "offer_id": shop.offer_id, "idempotency_key": f"p{n}"})
        for n in range(32)
    ]
    fast_calls.clear()
    outcomes = at_once(app, calls)
    assert all(status < 500 for status, _ in outcomes), outcomes
    assert codes(outcomes) == {"created": 6, "insufficient_credits": 26}
    assert sum(call is not None for call in fast_calls) == 6  # every spend in one round trip
    assert balance_of(person) == 1
    with app.app_context():
        report = verify_ledger()
        assert report.break_count == 0, report.breaks
        lots = db.session.execute(
            select(CreditLot.remaining)
            .join(Account, Account.id == CreditLot.account_id)
            .where(Account.key == f"user:{person.id}")
            .order_by(CreditLot.expires_at)
        ).scalars()
        assert list(lots) == [0, 1]  # the sooner-expiring lot went first
        db.session.remove()


@pytest.fixture
def bearer_lookups(monkeypatch):
    """How many times the API looked a bearer token up in the database."""
    import core.security as security

    count = [0]
    real = security.execute_alone

    def counting(statement, params, **kwargs):
        if statement is security.BEARER_QUERY:
            count[0] += 1
        return real(statement, params, **kwargs)

    monkeypatch.setattr(security, "execute_alone", counting)
    return count


def warm_till(api, shop, create_user, give_credits, new_code):
    """A till whose token was looked up and whose partner's account is open."""
    opener = create_user(Role.RESIDENT)
    give_credits(opener, 4)
    token = api.token(shop.staff)
    assert redeem(api, token, new_code(opener), shop.offer_id, "open").status_code == 201
    return token


def test_a_recent_token_lookup_saves_the_round_trip(
    app,
    api,
    shop,
    resident,
    create_user,
    give_credits,
    new_code,
    fast_calls,
    bearer_lookups,
    postgres_required,
):
    token = warm_till(api, shop, create_user, give_credits, new_code)
    code = new_code(resident)
    before = bearer_lookups[0]
    response = redeem(api, token, code, shop.offer_id, "quick")
    assert response.status_code == 201 and fast_calls[-1] is not None
    assert bearer_lookups[0] == before  # the function checked the token itself


@pytest.mark.parametrize(
    "change, status, error",
    [
        ("UPDATE api_tokens SET revoked_at = now()", 401, "invalid_token"),
        ("UPDATE api_tokens SET expires_at = now() - interval '1 second'", 401, "token_expired"),
        ("UPDATE users SET suspended_at = now() WHERE id = :staff", 401, "account_suspended"),
        ("DELETE FROM role_memberships WHERE user_id = :staff", 403, "forbidden"),
        ("DELETE FROM partner_memberships WHERE user_id = :staff", 403, "not_your_partner"),
    ],
)
def test_a_token_or_staff_changed_since_the_lookup_is_refused_and_nothing_moves(
    app,
    api,
    shop,
    resident,
    create_user,
    give_credits,
    new_code,
    balance_of,
    change,
    status,
    error,
    postgres_required,
):
    """Revoked, expired, suspended, no longer staff: the recent lookup does not let it by."""
    from sqlalchemy import text

    token = warm_till(api, shop, create_user, give_credits, new_code)
    code = new_code(resident)
    with app.app_context():
        db.session.execute(text(change), {"staff": shop.staff.id})
        db.session.commit()
    response = redeem(api, token, code, shop.offer_id, "after-change")
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == error
    assert balance_of(resident) == 10
    with app.app_context():
        assert (
            db.session.execute(
                select(RedemptionCode.used_at).where(RedemptionCode.resident_id == resident.id)
            ).scalar_one()
            is None
        )
        db.session.remove()
