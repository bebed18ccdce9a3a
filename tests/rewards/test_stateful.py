"""Random sequences of earn, spend, gift, expire, reverse and replays on several wallets.

After every step the ledger's invariants hold (``verify_ledger`` finds no break) and every
balance equals what a simple model of the accounts expects. Runs on SQLite and, with
DATABASE_URL set, on PostgreSQL, triggers included. Kept to a modest number of examples so
the suite stays fast; raise LEDGER_STATEFUL_EXAMPLES to search harder.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text

from core.extensions import db
from core.timeutil import utcnow
from rewards import operations as ops
from rewards.models import Account, CreditLot, Transaction
from rewards.verify import verify_ledger

LEDGER_TABLES = (
    "credit_lot_movements",
    "credit_lots",
    "ledger_entries",
    "ledger_transactions",
    "ledger_accounts",
)
EXAMPLES = int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "15"))


def wipe_ledger() -> None:
    """Empty the ledger's tables between examples.

    On PostgreSQL the append-only triggers refuse DELETE; switching triggers off for this
    one transaction is quicker than TRUNCATE for a handful of rows.
    """
    db.session.remove()
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in LEDGER_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608


def spendable(account_id: int) -> int:
    """Credits in the account's lots that have not reached their expiry date."""
    return int(
        db.session.execute(
            select(func.coalesce(func.sum(CreditLot.remaining), 0)).where(
                CreditLot.account_id == account_id, CreditLot.expires_at > utcnow()
            )
        ).scalar()
    )


class LedgerMachine(RuleBasedStateMachine):
    """Drives rewards.operations at random and checks the books after each step."""

    residents: list[int] = []

    def __init__(self):
        super().__init__()
        self.keys = 0
        self.expected: dict[int, int] = {}
        self.transactions: list[int] = []
        self.last_call = None

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    @initialize()
    def open_accounts(self):
        wipe_ledger()
        self.wallets = [ops.wallet_of(user_id).id for user_id in self.residents]
        self.pot = ops.community_pot("pot:food-bank", "Food bank").id
        self.partner = ops.partner_account("partner:1", "Café").id
        db.session.commit()
        self.expected = {account: 0 for account in [*self.wallets, self.pot, self.partner]}

    def run(self, operation, *args, **kwargs):
        """Call an operation; commit on success, roll back on a LedgerError."""
        self.last_call = (operation, args, kwargs)
        try:
            transaction = operation(*args, **kwargs)
        except ops.LedgerError as error:
            db.session.rollback()
            return error
        db.session.commit()
        if transaction is not None and transaction.id not in self.transactions:
            self.transactions.append(transaction.id)
        return transaction

    # About one lot in four is past its date already, so expiry and the "cannot spend
    # expired credits" rule both get exercised.
    @rule(
        who=st.integers(0, 2),
        amount=st.integers(1, 8),
        days=st.one_of(st.integers(-3, -1), st.integers(1, 400), st.integers(1, 400)),
    )
    def earn(self, who, amount, days):
        expires_at = utcnow() + timedelta(days=days, hours=1)
        result = self.run(
            ops.earn,
            self.residents[who],
            amount,
            idempotency_key=self.key(),
            description="Litter pick",
            expires_at=expires_at,
        )
        assert isinstance(result, Transaction)
        self.expected[self.wallets[who]] += amount

    @rule(who=st.integers(0, 2), amount=st.integers(1, 6))
    def spend(self, who, amount):
        can = spendable(self.wallets[who])
        result = self.run(
            ops.spend,
            self.residents[who],
            self.partner,
            amount,
            idempotency_key=self.key(),
            description="Swim",
        )
        if amount > can:
            assert getattr(result, "code", None) == "insufficient_credits"
        else:
            assert isinstance(result, Transaction)
            self.expected[self.wallets[who]] -= amount
            self.expected[self.partner] += amount

    @rule(who=st.integers(0, 2), to=st.integers(0, 3), amount=st.integers(1, 4))
    def gift(self, who, to, amount):
        receiver = self.pot if to == 3 else self.wallets[to]
        can = spendable(self.wallets[who])
        result = self.run(
            ops.gift, self.residents[who], receiver, amount, idempotency_key=self.key()
        )
        if receiver == self.wallets[who]:
            assert getattr(result, "code", None) == "invalid_recipient"
        elif amount > can:
            assert getattr(result, "code", None) == "insufficient_credits"
        else:
            assert isinstance(result, Transaction)
            self.expected[self.wallets[who]] -= amount
            self.expected[receiver] += amount

    @rule(data=st.data())
    def expire_a_due_lot(self, data):
        due = db.session.execute(
            select(CreditLot.id, CreditLot.account_id, CreditLot.remaining).where(
                CreditLot.expires_at <= utcnow(), CreditLot.remaining > 0
            )
        ).all()
        if not due:
            return
        lot_id, account_id, remaining = data.draw(st.sampled_from(due))
        result = self.run(ops.expire_lot, lot_id, idempotency_key=self.key())
        assert isinstance(result, Transaction) and result.amount == remaining
        self.expected[account_id] -= remaining

    @precondition(lambda self: self.transactions)
    @rule(data=st.data())
    def reverse(self, data):
        transaction_id = data.draw(st.sampled_from(self.transactions))
        before = self.balances()
        result = self.run(
            ops.reverse, transaction_id, reason="test", idempotency_key=self.key(), actor_id=None
        )
        if isinstance(result, ops.LedgerError):
            assert result.code in ("insufficient_credits", "already_reversed")
            assert self.balances() == before
            return
        for account_id, amount in db.session.execute(
            text("SELECT account_id, amount FROM ledger_entries WHERE transaction_id = :t"),
            {"t": result.id},
        ).all():
            if account_id in self.expected:
                self.expected[account_id] += amount

    @precondition(lambda self: self.last_call is not None)
    @rule()
    def replay_the_last_call(self):
        operation, args, kwargs = self.last_call
        if "idempotency_key" not in kwargs:
            return
        before = self.balances()
        first = db.session.execute(
            select(Transaction.id).where(Transaction.idempotency_key == kwargs["idempotency_key"])
        ).scalar()
        result = self.run(operation, *args, **kwargs)
        assert self.balances() == before
        if first is not None and isinstance(result, Transaction):
            assert result.id == first

    @precondition(lambda self: self.transactions)
    @rule(amount=st.integers(1, 5))
    def reuse_a_key_for_another_request(self, amount):
        key = db.session.execute(
            select(Transaction.idempotency_key).where(Transaction.kind == "earn").limit(1)
        ).scalar()
        if key is None:
            return
        result = self.run(
            ops.earn, self.residents[0], 10_000 + amount, idempotency_key=key, description="x"
        )
        assert getattr(result, "code", None) == "idempotency_conflict"

    def balances(self) -> dict[int, int]:
        return dict(db.session.execute(select(Account.id, Account.balance)).all())

    @invariant()
    def books_balance(self):
        if not self.expected:
            return
        balances = self.balances()
        for account_id, expected in self.expected.items():
            assert balances[account_id] == expected, (account_id, balances, self.expected)
        assert verify_ledger().breaks == []


def test_random_sequences_of_operations_keep_every_invariant(ctx, create_user):
    LedgerMachine.residents = [create_user().id for _ in range(3)]
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
