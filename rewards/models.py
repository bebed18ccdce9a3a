"""The credits ledger: accounts, transactions, entries and expiring credit lots.

Design (after django-hordak's Account → Transaction → Leg, with time credits' lots):

- An ``Account`` holds credits: a resident's wallet, a partner business's account, a
  community pot, or one of the scheme's own accounts (``issuance``, where earned credits
  come from; ``expired``; ``settled``, where partners' credits go once the council paid
  for them). ``balance`` is kept on the row for speed and always equals the sum of the
  account's entries. Only the issuance account may go below zero (a CHECK constraint).
- A ``Transaction`` is one movement of credits, with a ``kind`` (earn, spend, gift, expire,
  settle, reverse), who asked for it, why, and a unique ``idempotency_key``: the same key
  can never move credits twice. ``request_hash`` fingerprints what was asked, so the same
  key with a different request is told apart from a replay.
- An ``Entry`` is one leg: an account and a signed amount. The entries of a transaction sum
  to zero (on PostgreSQL a deferred constraint trigger refuses a transaction that does not),
  and entries are never updated or deleted (triggers refuse it): a mistake is corrected by
  a reversing transaction. ``balance_after`` is the account's balance after this entry, so
  a wallet's history is read from one index without adding anything up; ``memo`` says in
  words, from that account's point of view, why the credits moved.
- A ``CreditLot`` is a parcel of credits held by a wallet or pot, with its expiry date:
  earning creates one; spending and giving consume the lots that expire first; a gift
  creates lots for the receiver with the giver's expiry dates. For accounts that hold lots
  the balance always equals the sum of their lots' ``remaining``.
- A ``LotMovement`` records how a transaction changed each lot (``+`` created or restored,
  ``-`` consumed), which is what lets a reversal put back exactly the lots it took and lets
  ``ledger verify`` prove no lot was over-consumed.

Amounts are whole credits (integers): nothing here is ever a float.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.extensions import db
from core.timeutil import UTCDateTime, utcnow


class AccountKind(enum.StrEnum):
    """What an account is for."""

    RESIDENT = "resident"
    PARTNER = "partner"
    POT = "pot"
    ISSUANCE = "issuance"
    EXPIRED = "expired"
    SETTLED = "settled"


#: Accounts whose credits are held in lots (and so can expire).
LOT_ACCOUNT_KINDS = frozenset({AccountKind.RESIDENT, AccountKind.POT})


class TransactionKind(enum.StrEnum):
    """Why credits moved."""

    EARN = "earn"
    SPEND = "spend"
    GIFT = "gift"
    EXPIRE = "expire"
    SETTLE = "settle"
    REVERSE = "reverse"


class Account(db.Model):
    """Somewhere credits are held."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0 OR kind = 'issuance'", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable identity: ``user:12``, ``partner:7``, ``pot:food-bank``, ``scheme:issuance``.
    key: Mapped[str] = mapped_column(String(100), unique=True)
    #: One of ``AccountKind``.
    kind: Mapped[str] = mapped_column(String(20), index=True)
    #: The name shown in other people's history ("The Corner Café", "Food bank").
    name: Mapped[str] = mapped_column(String(200))
    #: For community pots: what the credits given to it are for.
    description: Mapped[str] = mapped_column(Text, default="")
    #: The resident whose wallet this is (wallets only).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    #: The sum of this account's entries, kept up to date by ``rewards.operations``.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When the account was opened.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def holds_lots(self) -> bool:
        return self.kind in LOT_ACCOUNT_KINDS


class Transaction(db.Model):
    """One movement of credits between accounts; its entries sum to zero."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: One of ``TransactionKind``.
    kind: Mapped[str] = mapped_column(String(20), index=True)
    #: The caller's key for this request: the same key never moves credits twice.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: SHA-256 of what was asked (kind, accounts, amount...), to tell a replay from a clash.
    request_hash: Mapped[str] = mapped_column(String(64))
    #: The whole number of credits moved (the positive side of the entries).
    amount: Mapped[int] = mapped_column(BigInteger)
    #: Why, in words, as the caller put it ("Litter pick, Roundhay Park, 3 Nov").
    description: Mapped[str] = mapped_column(Text, default="")
    #: For reversals: why the original was wrong.
    reason: Mapped[str | None] = mapped_column(Text)
    #: Where it came from, for earns (e.g. ``claim:42``).
    source: Mapped[str] = mapped_column(String(100), default="")
    #: Who made it happen (None for the system: scheduled jobs, demo data).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    #: For reversals: the transaction it reverses. Unique, so nothing is reversed twice.
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id"), unique=True
    )
    #: When it happened.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    entries: Mapped[list[Entry]] = relationship(
        back_populates="transaction", order_by="Entry.id", viewonly=True
    )


class Entry(db.Model):
    """One leg of a transaction: a signed amount on one account. Never changed."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        # A wallet's history, newest first, with a cursor: one index range scan.
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The transaction this leg belongs to.
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    #: The account it changes.
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    #: Credits in (positive) or out (negative).
    amount: Mapped[int] = mapped_column(BigInteger)
    #: The account's balance just after this entry.
    balance_after: Mapped[int] = mapped_column(BigInteger)
    #: Why, in words, from this account's side ("for Litter pick", "given to Sam").
    memo: Mapped[str] = mapped_column(String(500), default="")

    transaction: Mapped[Transaction] = relationship(back_populates="entries")
    account: Mapped[Account] = relationship()


class CreditLot(db.Model):
    """Credits a wallet or pot holds that share one expiry date."""

    __tablename__ = "credit_lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        # The live lots of an account in expiry order (spending, the wallet page).
        Index("ix_credit_lots_account_id_remaining", "account_id", "remaining", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The wallet or pot holding it.
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    #: Credits it started with.
    amount: Mapped[int] = mapped_column(BigInteger)
    #: Credits still in it (0 when spent, given away or expired).
    remaining: Mapped[int] = mapped_column(BigInteger)
    #: When the credits were first earned (kept through gifts).
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: After this moment what remains can no longer be spent and is expired.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: Where the credits came from, e.g. ``claim:42`` or ``gift``.
    source: Mapped[str] = mapped_column(String(100), default="")
    #: The transaction that created the lot.
    created_by_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    #: For gifts: the giver's lot these credits came out of.
    parent_lot_id: Mapped[int | None] = mapped_column(ForeignKey("credit_lots.id"))


class LotMovement(db.Model):
    """How one transaction changed one lot (+ created or restored, - consumed)."""

    __tablename__ = "credit_lot_movements"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The transaction that moved credits in or out of the lot.
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    #: The lot.
    lot_id: Mapped[int] = mapped_column(ForeignKey("credit_lots.id"), index=True)
    #: Credits added to (positive) or taken from (negative) the lot.
    amount: Mapped[int] = mapped_column(BigInteger)


# The database's own guard rails on PostgreSQL. The migration (a1ledger0001) installs the
# same SQL; these listeners install it where tests build the schema with create_all().
BALANCED_TRANSACTION_SQL = """
CREATE OR REPLACE FUNCTION ledger_check_transaction_balanced() RETURNS trigger AS $$
DECLARE
    total bigint;
BEGIN
    SELECT COALESCE(SUM(amount), 0) INTO total
      FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries sum to %',
            NEW.transaction_id, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced();
"""

APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (post a reversing transaction instead)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""


@event.listens_for(Entry.__table__, "after_create")
def install_postgresql_guards(target, connection, **kw) -> None:
    """Create the triggers on PostgreSQL (SQLite relies on the operations and verify)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(BALANCED_TRANSACTION_SQL))
        connection.execute(text(APPEND_ONLY_SQL))


__all__ = [
    "LOT_ACCOUNT_KINDS",
    "Account",
    "AccountKind",
    "CreditLot",
    "Entry",
    "LotMovement",
    "Transaction",
    "TransactionKind",
]
