"""What the database itself holds: triggers (PostgreSQL), CHECK and UNIQUE constraints (both),
and ``ledger verify`` finding breaks planted by hand behind the operations' back."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.extensions import db
from rewards import operations as ops
from rewards.verify import verify_ledger
from tests.rewards.conftest import give

NEW_TRANSACTION = text(
    "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, "
    "description, source, created_at) VALUES ('earn', :key, 'x', 5, '', '', :now) RETURNING id"
)
NEW_ENTRY = text(
    "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo) "
    "VALUES (:transaction_id, :account_id, :amount, :amount, '')"
)


def plant_unbalanced_transaction(account_id: int) -> int:
    """A transaction with a single +5 entry, written with plain SQL."""
    from core.timeutil import utcnow

    transaction_id = db.session.execute(NEW_TRANSACTION, {"key": "planted", "now": utcnow()})
    transaction_id = transaction_id.scalar()
    db.session.execute(
        NEW_ENTRY, {"transaction_id": transaction_id, "account_id": account_id, "amount": 5}
    )
    return transaction_id


@pytest.mark.postgres
def test_postgresql_refuses_an_unbalanced_transaction_at_commit(postgres_required, ctx, resident):
    account_id = ops.wallet_of(resident.id).id
    db.session.commit()
    plant_unbalanced_transaction(account_id)
    with pytest.raises(IntegrityError, match="does not balance"):
        db.session.commit()
    db.session.rollback()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET description = 'changed'",
        "DELETE FROM ledger_transactions",
    ],
)
def test_postgresql_refuses_to_change_or_delete_entries_and_transactions(
    postgres_required, ctx, resident, statement
):
    give(resident.id, 3)
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text(statement))
    db.session.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_accounts SET balance = -1 WHERE kind = 'resident'",
        "UPDATE credit_lots SET remaining = amount + 1",
        "UPDATE credit_lots SET remaining = -1",
    ],
)
def test_check_constraints_refuse_negative_wallets_and_over_consumed_lots(ctx, resident, statement):
    give(resident.id, 3)
    with pytest.raises(IntegrityError):
        db.session.execute(text(statement))
        db.session.flush()
    db.session.rollback()


def test_idempotency_keys_are_unique_in_the_database(ctx, resident):
    from core.timeutil import utcnow

    db.session.execute(NEW_TRANSACTION, {"key": "same", "now": utcnow()})
    with pytest.raises(IntegrityError):
        db.session.execute(NEW_TRANSACTION, {"key": "same", "now": utcnow()})
    db.session.rollback()


def test_ledger_verify_passes_on_a_sound_ledger(app, ctx, resident, partner):
    give(resident.id, 5)
    ops.spend(resident.id, partner.id, 2, idempotency_key="s", description="Tea")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "Every invariant holds" in result.output


def test_ledger_verify_names_each_break_planted_by_hand(app, ctx, resident):
    give(resident.id, 5)
    account_id = ops.wallet_of(resident.id).id
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        # Switch the triggers off for this one session, as a careless manual fix might.
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
    planted = plant_unbalanced_transaction(account_id)
    db.session.execute(text("UPDATE credit_lots SET remaining = remaining - 1"))
    db.session.commit()
    breaks = verify_ledger().breaks
    assert f"transaction {planted}: its entries sum to 5, not 0" in breaks
    assert any(
        b.startswith(f"account {account_id} (user:") and "entries sum to 10" in b for b in breaks
    )
    assert any("its lots hold 4" in b for b in breaks)
    assert any(b.startswith("lot 1: 4 remaining but its movements add up to 5") for b in breaks)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert f"BREAK transaction {planted}: its entries sum to 5, not 0" in result.output
    assert "break(s) found" in result.output
