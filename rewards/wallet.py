"""Reading a wallet: balance, live lots and history. Reads only; writes are in operations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.extensions import db
from core.timeutil import utcnow
from rewards.models import Account, CreditLot, Entry, Transaction

#: Live lots listed at most on the wallet (a resident rarely has more than a handful).
MAX_LOTS_SHOWN = 100


def balance_of(user) -> int:
    """The resident's balance (0 before their first credit). The /me and wallet hook."""
    user_id = user if isinstance(user, int) else user.id
    balance = db.session.execute(
        select(Account.balance).where(Account.key == f"user:{user_id}")
    ).scalar()
    return int(balance or 0)


@dataclass
class LotView:
    """A lot as the wallet shows it."""

    id: int
    amount: int
    remaining: int
    earned_at: datetime
    expires_at: datetime
    source: str

    @property
    def days_left(self) -> int:
        """Whole days until it expires (0 on its last day or after)."""
        return max(0, (self.expires_at - utcnow()).days)


def live_lots(account_id: int, limit: int = MAX_LOTS_SHOWN) -> list[LotView]:
    """The account's lots with credits left, soonest expiring first."""
    rows = db.session.execute(
        select(
            CreditLot.id,
            CreditLot.amount,
            CreditLot.remaining,
            CreditLot.earned_at,
            CreditLot.expires_at,
            CreditLot.source,
        )
        .where(CreditLot.account_id == account_id, CreditLot.remaining > 0)
        .order_by(CreditLot.expires_at, CreditLot.id)
        .limit(limit)
    ).all()
    return [LotView(*row) for row in rows]


def next_expiry(lots: list[LotView]) -> tuple[datetime | None, int]:
    """When the soonest credits expire, and how many expire then."""
    if not lots:
        return None, 0
    soonest = lots[0].expires_at
    return soonest, sum(lot.remaining for lot in lots if lot.expires_at == soonest)


@dataclass
class HistoryItem:
    """One line of a wallet's history."""

    id: int
    transaction_id: int
    kind: str
    amount: int
    balance_after: int
    created_at: datetime
    memo: str

    @property
    def signed_amount(self) -> str:
        """``+2`` or ``−1`` (a real minus sign, as people write it)."""
        return f"+{self.amount}" if self.amount > 0 else f"\u2212{-self.amount}"

    @property
    def sentence(self) -> str:
        """``+2 for Litter pick, Roundhay Park`` — the movement in words."""
        return f"{self.signed_amount} {self.memo}"


def history(account_id: int, *, limit: int = 50, before: int | None = None):
    """Entries of the account, newest first, and the cursor of the next page (or None).

    The cursor is the last entry id shown; each page is one range scan of the
    (account_id, id) index, so its cost does not grow with the length of the history.
    """
    query = (
        select(
            Entry.id,
            Entry.transaction_id,
            Transaction.kind,
            Entry.amount,
            Entry.balance_after,
            Transaction.created_at,
            Entry.memo,
        )
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .where(Entry.account_id == account_id)
        .order_by(Entry.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Entry.id < before)
    items = [HistoryItem(*row) for row in db.session.execute(query).all()]
    next_cursor = items[limit - 1].id if len(items) > limit else None
    return items[:limit], next_cursor


def community_pots() -> list[Account]:
    """Every community pot, by name."""
    return list(
        db.session.execute(select(Account).where(Account.kind == "pot").order_by(Account.name))
        .scalars()
        .all()
    )


def count_live_lots(account_id: int) -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(CreditLot)
            .where(CreditLot.account_id == account_id, CreditLot.remaining > 0)
        ).scalar()
    )
