"""The ledger's operations: earning, spending, giving, expiring, settling and reversing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from core.extensions import db
from core.timeutil import utcnow
from rewards import operations as ops
from rewards.models import CreditLot, Entry, LotMovement, Transaction
from rewards.verify import verify_ledger
from rewards.wallet import balance_of, history, live_lots
from tests.rewards.conftest import give


def lots_of(user_id: int) -> list[tuple[int, int]]:
    """(amount, remaining) of the resident's live lots, soonest expiring first."""
    return [(lot.amount, lot.remaining) for lot in live_lots(ops.wallet_of(user_id).id)]


def assert_ledger_holds():
    report = verify_ledger()
    assert report.breaks == []


def test_earn_issues_credits_into_a_new_lot_valid_for_a_year(ctx, resident):
    transaction = ops.earn(
        resident.id, 3, idempotency_key="claim:1", description="Litter pick", source="claim:1"
    )
    db.session.commit()
    assert transaction.kind == "earn" and transaction.amount == 3
    assert balance_of(resident.id) == 3
    (lot,) = db.session.execute(db.select(CreditLot)).scalars().all()
    assert (lot.amount, lot.remaining, lot.source) == (3, 3, "claim:1")
    assert timedelta(days=364) < lot.expires_at - utcnow() <= timedelta(days=365)
    assert_ledger_holds()


def test_credit_validity_comes_from_the_scheme_config(app, ctx, resident):
    app.config["CREDIT_VALIDITY_DAYS"] = 30
    try:
        ops.earn(resident.id, 1, idempotency_key="k", description="Gardening")
    finally:
        del app.config["CREDIT_VALIDITY_DAYS"]
    lot = db.session.execute(db.select(CreditLot)).scalar_one()
    assert timedelta(days=29) < lot.expires_at - utcnow() <= timedelta(days=30)


def test_spend_uses_the_lots_that_expire_first_across_several(ctx, resident, partner):
    give(resident.id, 2, days=300)
    give(resident.id, 2, days=10)
    give(resident.id, 2, days=100)
    ops.spend(resident.id, partner.id, 3, idempotency_key="s", description="Swim")
    db.session.commit()
    assert lots_of(resident.id) == [(2, 1), (2, 2)]
    assert balance_of(resident.id) == 3
    assert db.session.get(type(partner), partner.id).balance == 3
    assert_ledger_holds()


def test_spend_more_than_the_balance_is_refused_and_changes_nothing(ctx, resident, partner):
    give(resident.id, 2)
    with pytest.raises(ops.InsufficientCredits) as refused:
        ops.spend(resident.id, partner.id, 3, idempotency_key="s", description="Swim")
    assert refused.value.code == "insufficient_credits" and refused.value.status == 422
    db.session.rollback()
    assert balance_of(resident.id) == 2
    assert (
        db.session.execute(db.select(Transaction).where(Transaction.kind == "spend")).first()
        is None
    )


def test_credits_past_their_date_cannot_be_spent_before_the_expiry_job_runs(ctx, resident, partner):
    give(resident.id, 2, days=1)
    give(resident.id, 1, days=30)
    with time_machine.travel(utcnow() + timedelta(days=2)):
        with pytest.raises(ops.InsufficientCredits):
            ops.spend(resident.id, partner.id, 2, idempotency_key="s", description="Swim")
        db.session.rollback()
        ops.spend(resident.id, partner.id, 1, idempotency_key="s2", description="Swim")
    db.session.commit()
    assert lots_of(resident.id) == [(2, 2)]


@pytest.mark.parametrize("amount", [0, -1, 1.5, "2", True, ops.MAX_AMOUNT + 1])
def test_amounts_must_be_positive_whole_numbers(ctx, resident, partner, amount):
    with pytest.raises(ops.InvalidAmount) as refused:
        ops.earn(resident.id, amount, idempotency_key="k", description="x")
    assert refused.value.code == "invalid_amount"


def test_gift_gives_the_receiver_lots_with_the_givers_expiry_dates(ctx, resident, other_resident):
    give(resident.id, 2, days=10)
    give(resident.id, 5, days=200)
    receiver = ops.wallet_of(other_resident.id)
    ops.gift(resident.id, receiver.id, 4, idempotency_key="g", description="Happy birthday")
    db.session.commit()
    giver_lots = live_lots(ops.wallet_of(resident.id).id)
    receiver_lots = live_lots(receiver.id)
    assert [(lot.remaining) for lot in giver_lots] == [3]
    assert [(lot.amount, lot.remaining) for lot in receiver_lots] == [(2, 2), (2, 2)]
    assert receiver_lots[0].expires_at < receiver_lots[1].expires_at
    assert receiver_lots[1].expires_at == giver_lots[0].expires_at
    words = [item.sentence for item in history(receiver.id)[0]]
    assert words[0].startswith("+4 from ")
    assert_ledger_holds()


def test_gift_to_a_community_pot(ctx, resident):
    give(resident.id, 3)
    pot = ops.community_pot("pot:food-bank", "Food bank", "Meals for families")
    ops.gift(resident.id, pot.id, 2, idempotency_key="g")
    db.session.commit()
    assert db.session.get(type(pot), pot.id).balance == 2
    (item,) = history(ops.wallet_of(resident.id).id)[0][:1]
    assert item.sentence == "\u22122 given to Food bank"
    assert_ledger_holds()


def test_gifts_to_yourself_or_to_a_partner_are_refused(ctx, resident, partner):
    give(resident.id, 3)
    with pytest.raises(ops.InvalidRecipient):
        ops.gift(resident.id, ops.wallet_of(resident.id).id, 1, idempotency_key="g1")
    with pytest.raises(ops.InvalidRecipient):
        ops.gift(resident.id, partner.id, 1, idempotency_key="g2")


def test_expire_lot_moves_what_is_left_to_the_expired_account(ctx, resident, partner):
    give(resident.id, 3, days=5)
    ops.spend(resident.id, partner.id, 1, idempotency_key="s", description="Tea")
    db.session.commit()
    lot_id = db.session.execute(db.select(CreditLot.id)).scalar()
    with pytest.raises(ops.LotNotDue) as refused:
        ops.expire_lot(lot_id, idempotency_key=f"expire:{lot_id}")
    assert refused.value.code == "lot_not_due"
    db.session.rollback()
    later = utcnow() + timedelta(days=6)
    transaction = ops.expire_lot(lot_id, idempotency_key=f"expire:{lot_id}", now=later)
    again = ops.expire_lot(lot_id, idempotency_key=f"expire:{lot_id}", now=later)
    db.session.commit()
    assert again.id == transaction.id and transaction.amount == 2
    assert balance_of(resident.id) == 0
    assert ops.system_account(ops.AccountKind.EXPIRED).balance == 2
    assert ops.expire_lot(lot_id, idempotency_key="another-key", now=later) is None
    assert_ledger_holds()


def test_settle_moves_a_partners_credits_to_the_settled_account(ctx, resident, partner):
    give(resident.id, 3)
    ops.spend(resident.id, partner.id, 3, idempotency_key="s", description="Swim")
    ops.settle(partner.id, 3, idempotency_key="settlement:1", description="November")
    db.session.commit()
    assert ops.system_account(ops.AccountKind.SETTLED).balance == 3
    with pytest.raises(ops.InsufficientCredits):
        ops.settle(partner.id, 1, idempotency_key="settlement:2", description="December")
    db.session.rollback()
    assert_ledger_holds()


def test_reversing_a_spend_puts_credits_back_into_the_lots_they_came_from(ctx, resident, partner):
    give(resident.id, 2, days=10)
    give(resident.id, 2, days=100)
    spend = ops.spend(resident.id, partner.id, 3, idempotency_key="s", description="Swim")
    db.session.commit()
    reversal = ops.reverse(spend.id, reason="Till error", idempotency_key="r", actor_id=None)
    db.session.commit()
    assert reversal.reverses_id == spend.id and reversal.reason == "Till error"
    assert lots_of(resident.id) == [(2, 2), (2, 2)]
    assert db.session.get(type(partner), partner.id).balance == 0
    # The original's entries are still there, untouched.
    assert (
        len(db.session.execute(db.select(Entry).where(Entry.transaction_id == spend.id)).all()) == 2
    )
    with pytest.raises(ops.AlreadyReversed) as refused:
        ops.reverse(spend.id, reason="again", idempotency_key="r2", actor_id=None)
    assert refused.value.code == "already_reversed" and refused.value.status == 409
    db.session.rollback()
    assert_ledger_holds()


def test_reversing_an_earn_already_partly_spent_takes_from_other_lots(ctx, resident, partner):
    earn = give(resident.id, 3, days=10)
    give(resident.id, 5, days=100)
    ops.spend(resident.id, partner.id, 2, idempotency_key="s", description="Tea")
    db.session.commit()
    ops.reverse(earn.id, reason="Claim was a mistake", idempotency_key="r", actor_id=None)
    db.session.commit()
    assert balance_of(resident.id) == 3
    assert lots_of(resident.id) == [(5, 3)]
    assert_ledger_holds()


def test_reversing_an_earn_already_spent_in_full_is_refused(ctx, resident, partner):
    earn = give(resident.id, 3)
    ops.spend(resident.id, partner.id, 2, idempotency_key="s", description="Tea")
    db.session.commit()
    with pytest.raises(ops.InsufficientCredits):
        ops.reverse(earn.id, reason="Mistake", idempotency_key="r", actor_id=None)
    db.session.rollback()
    with pytest.raises(ops.ReasonRequired):
        ops.reverse(earn.id, reason="  ", idempotency_key="r", actor_id=None)


def test_reversing_a_gift_restores_both_sides(ctx, resident, other_resident):
    give(resident.id, 4, days=20)
    receiver = ops.wallet_of(other_resident.id)
    gift = ops.gift(resident.id, receiver.id, 3, idempotency_key="g")
    db.session.commit()
    ops.reverse(gift.id, reason="Wrong person", idempotency_key="r", actor_id=None)
    db.session.commit()
    assert lots_of(resident.id) == [(4, 4)]
    assert balance_of(other_resident.id) == 0
    movements = db.session.execute(db.select(LotMovement)).scalars().all()
    assert sum(m.amount for m in movements) == 4
    assert_ledger_holds()


def test_history_says_why_each_credit_moved_in_words(ctx, resident, partner):
    give(resident.id, 2)
    ops.spend(resident.id, partner.id, 1, idempotency_key="s", description="coffee")
    db.session.commit()
    items, cursor = history(ops.wallet_of(resident.id).id)
    assert [item.sentence for item in items] == [
        "\u22121 at The Corner Café: coffee",
        "+2 for Litter pick, Roundhay Park",
    ]
    assert [item.balance_after for item in items] == [1, 2] and cursor is None


def test_history_pages_with_a_cursor(ctx, resident):
    for n in range(5):
        give(resident.id, 1, key=f"e{n}")
    account_id = ops.wallet_of(resident.id).id
    first, cursor = history(account_id, limit=2)
    second, cursor2 = history(account_id, limit=2, before=cursor)
    third, cursor3 = history(account_id, limit=2, before=cursor2)
    assert [i.balance_after for i in first + second + third] == [5, 4, 3, 2, 1]
    assert cursor3 is None


def test_the_same_key_twice_returns_the_first_transaction_and_moves_credits_once(
    ctx, resident, partner
):
    give(resident.id, 5)
    first = ops.spend(resident.id, partner.id, 2, idempotency_key="till:1", description="Tea")
    db.session.commit()
    again = ops.spend(resident.id, partner.id, 2, idempotency_key="till:1", description="Tea")
    db.session.commit()
    assert again.id == first.id
    assert balance_of(resident.id) == 3
    earned = ops.earn(resident.id, 1, idempotency_key="claim:9", description="Gardening")
    db.session.commit()
    assert ops.earn(resident.id, 1, idempotency_key="claim:9", description="Gardening").id == (
        earned.id
    )
    db.session.commit()
    assert balance_of(resident.id) == 4
    assert_ledger_holds()


def test_a_replay_is_answered_even_after_the_balance_has_gone(ctx, resident, partner):
    give(resident.id, 2)
    first = ops.spend(resident.id, partner.id, 2, idempotency_key="till:1", description="Tea")
    db.session.commit()
    assert ops.spend(resident.id, partner.id, 2, idempotency_key="till:1", description="x").id == (
        first.id
    )


@pytest.mark.parametrize(
    "second",
    [
        lambda r, p: ops.spend(r, p, 3, idempotency_key="till:1", description="Tea"),
        lambda r, p: ops.earn(r, 2, idempotency_key="till:1", description="Tea"),
    ],
)
def test_the_same_key_with_a_different_request_is_refused(ctx, resident, partner, second):
    give(resident.id, 5)
    ops.spend(resident.id, partner.id, 2, idempotency_key="till:1", description="Tea")
    db.session.commit()
    with pytest.raises(ops.IdempotencyConflict) as refused:
        second(resident.id, partner.id)
    assert refused.value.code == "idempotency_conflict" and refused.value.status == 409
    db.session.rollback()
    assert balance_of(resident.id) == 3


def test_an_account_key_cannot_be_reused_for_another_kind_of_account(ctx, resident):
    ops.wallet_of(resident.id)
    with pytest.raises(ops.LedgerError) as refused:
        ops.partner_account(f"user:{resident.id}", "Not a partner")
    assert refused.value.code == "invalid_key"
