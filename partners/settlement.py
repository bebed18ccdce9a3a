"""Settlement: what the scheme owes each partner per period, and the state of its payment.

Design:

- A ``Settlement`` covers every standing redemption of one partner not settled before,
  up to the end of one period (weekly by default, periods start on Mondays 00:00 UTC). It is
  made once per partner and period (UNIQUE ``partner_id, period_end``); each redemption is
  settled at most once (``SettlementRedemption.redemption_id`` is UNIQUE). When it is made,
  a ledger ``settle`` transaction (key ``settlement:<partner>:<period end>``) moves the
  credits from the partner's account to the scheme's settled account, in the same database
  transaction, so nothing is settled twice.
- The amount is the sum of ``credits x settlement rate`` of its redemptions, in pence, at
  the rate each redemption was taken at.
- Statuses follow an explicit state machine (``TRANSITIONS``): pending -> submitted ->
  paid; submitted -> failed -> submitted again (a retry); pending or failed -> cancelled;
  paid -> failed when Stripe reverses the transfer or the connected account's payout that
  carried it fails (submitted -> failed too, when that news comes first). Anything else raises
  ``IllegalTransition`` (code ``illegal_settlement_transition``).
- Budget cap: council sets a budget per period (``SettlementBudget``; the default comes from
  ``SETTLEMENT_BUDGET_PENCE``, None = no cap). A settlement that would take the period over
  its budget stays pending with ``hold_reason = "budget"`` and is not paid until council
  raises the budget; council sees the shortfall. The period's budget row is locked while a
  settlement is admitted, so two runs never both spend the last of it.
- Payment (``partners.payments``): a Stripe Connect transfer for partners with a connected
  account, or a line in a ``PaymentBatch`` (the CSV payment file for the council's finance
  system) for the rest; council staff mark a batch paid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.audit import record
from core.errors import DomainError, InvalidRequest, NotFoundError, checked_text
from core.extensions import db
from core.models import User
from core.timeutil import UTCDateTime, utcnow
from partners.models import Partner, Redemption, RedemptionStatus

#: Periods are counted from this Monday (UTC).
PERIOD_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)


class SettlementStatus(enum.StrEnum):
    """Where a settlement's payment is."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return {
            SettlementStatus.PENDING: "Waiting to be paid",
            SettlementStatus.SUBMITTED: "Payment sent",
            SettlementStatus.PAID: "Paid",
            SettlementStatus.FAILED: "Payment failed",
            SettlementStatus.CANCELLED: "Cancelled",
        }[self]


S = SettlementStatus
#: The only moves a settlement may make.
TRANSITIONS: dict[SettlementStatus, frozenset[SettlementStatus]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.PAID, S.FAILED}),
    S.FAILED: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.PAID: frozenset({S.FAILED}),  # a reversed transfer, or a failed payout that carried it
    S.CANCELLED: frozenset(),
}


class HoldReason(enum.StrEnum):
    """Why a pending settlement is not being paid yet."""

    BUDGET = "budget"


class BatchStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    PAID = "paid"


class SettlementError(DomainError):
    """Settlement refused something; ``code`` is stable."""

    status = 409
    code = "settlement_error"


class IllegalTransition(SettlementError):
    code = "illegal_settlement_transition"

    def __init__(self, settlement_id: int, current: str, wanted: str):
        super().__init__(
            f"Settlement {settlement_id} is {current}; it cannot become {wanted}.",
        )
        self.current = current
        self.wanted = wanted


class SettlementNotFound(SettlementError):
    status = 404
    code = "settlement_not_found"


class BatchAlreadyPaid(SettlementError):
    code = "batch_already_paid"


class SettlementOnHold(SettlementError):
    code = "settlement_on_hold"


# --------------------------------------------------------------------------- models


class Settlement(db.Model):
    """What the scheme owes one partner for one period, and its payment."""

    __tablename__ = "settlements"
    __table_args__ = (
        UniqueConstraint("partner_id", "period_end", name="uq_settlements_partner_period"),
        CheckConstraint("credits > 0", name="credits_positive"),
        CheckConstraint("amount_pence >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Whom it pays.
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    #: The period it is for: redemptions before ``period_end`` not settled before.
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    #: Credits redeemed, how many redemptions, and what is owed in pence.
    credits: Mapped[int] = mapped_column(BigInteger)
    redemption_count: Mapped[int] = mapped_column(Integer)
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    #: One of ``SettlementStatus``; changed only through ``transition``.
    status: Mapped[str] = mapped_column(String(20), default=S.PENDING.value, index=True)
    #: Why a pending settlement waits (``budget``), or None.
    hold_reason: Mapped[str | None] = mapped_column(String(40))
    #: The ledger's settle transaction that moved the credits.
    ledger_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    #: ``stripe_connect`` or ``payment_file``: how it was (or is being) paid.
    payout_method: Mapped[str | None] = mapped_column(String(20))
    #: Counts transfers asked for: a new one only after Stripe definitively refused or
    #: reversed the last; part of the transfer's idempotency key.
    transfer_attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: Tries of the payment so far, when the next automatic try is due, and the last error.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: The Stripe transfer (``tr_...``) and the connected account it went to.
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stripe_destination: Mapped[str | None] = mapped_column(String(64))
    #: The payment file it is a line of.
    payment_batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("settlement_payment_batches.id"), index=True
    )
    #: When it was made, sent, paid, failed, cancelled.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    partner: Mapped[Partner] = relationship()

    @property
    def state(self) -> SettlementStatus:
        return SettlementStatus(self.status)

    @property
    def transfer_key(self) -> str:
        """The Stripe idempotency key of this settlement's current transfer."""
        return f"settlement-{self.id}-transfer-{self.transfer_attempt}"

    @property
    def transfer_group(self) -> str:
        return f"settlement-{self.id}"

    @property
    def gave_up(self) -> bool:
        """Failed and no automatic retry is coming: council must act."""
        return self.status == S.FAILED.value and self.next_attempt_at is None


class SettlementRedemption(db.Model):
    """A redemption a settlement pays for. A redemption is settled at most once."""

    __tablename__ = "settlement_redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The settlement.
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), index=True)
    #: The redemption; UNIQUE, so the database refuses settling it twice.
    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), unique=True)


class PaymentBatch(db.Model):
    """One payment file for the council's finance system: settlements paid by the council."""

    __tablename__ = "settlement_payment_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: ``submitted`` (file ready for finance) or ``paid`` (council marked it paid).
    status: Mapped[str] = mapped_column(String(20), default=BatchStatus.SUBMITTED.value)
    #: How many settlements and how much, in pence.
    settlement_count: Mapped[int] = mapped_column(Integer, default=0)
    total_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When it was made; when and by whom it was marked paid, with finance's reference.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reference: Mapped[str | None] = mapped_column(String(100))


class SettlementBudget(db.Model):
    """What council will pay partners for one period, in pence (None = the default)."""

    __tablename__ = "settlement_budgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The period, by its end.
    period_end: Mapped[datetime] = mapped_column(UTCDateTime, unique=True)
    #: The cap in pence; None means ``SETTLEMENT_BUDGET_PENCE`` (None there = no cap).
    amount_pence: Mapped[int | None] = mapped_column(BigInteger)
    #: Who set it and when.
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StripeConnectedAccount(db.Model):
    """A partner's Stripe Express account and what Stripe last told us about it."""

    __tablename__ = "stripe_connected_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The partner; one connected account each.
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), unique=True)
    #: Stripe's id (``acct_...``).
    account_id: Mapped[str] = mapped_column(String(64), unique=True)
    #: From the account object: onboarding finished, and payouts possible.
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last payout Stripe could not make to the partner's bank, in words.
    last_payout_failure: Mapped[str | None] = mapped_column(Text)
    #: When it was made, and last refreshed from Stripe.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeEvent(db.Model):
    """A webhook event received: recorded once, so a replay changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stripe's event id (``evt_...``); UNIQUE.
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    #: Its type (``transfer.reversed``) and the object it is about.
    type: Mapped[str] = mapped_column(String(60))
    object_id: Mapped[str] = mapped_column(String(64), default="")
    #: When we received it, and what we did.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(String(200), default="")


# --------------------------------------------------------------------------- state machine


def transition(settlement: Settlement, wanted: SettlementStatus, now: datetime | None = None):
    """Move ``settlement`` to ``wanted`` or raise ``IllegalTransition``. Flushes."""
    current = SettlementStatus(settlement.status)
    if wanted not in TRANSITIONS[current]:
        raise IllegalTransition(settlement.id, current.value, wanted.value)
    now = now or utcnow()
    settlement.status = wanted.value
    stamp = {
        S.SUBMITTED: "submitted_at",
        S.PAID: "paid_at",
        S.FAILED: "failed_at",
        S.CANCELLED: "cancelled_at",
    }.get(wanted)
    if stamp:
        setattr(settlement, stamp, now)
    if wanted == S.PAID:
        settlement.next_attempt_at = None
        settlement.last_error = None
    db.session.flush()


def lock_settlement(settlement_id: int) -> Settlement:
    """The settlement, locked (FOR UPDATE on PostgreSQL) and fresh from the database."""
    query = select(Settlement).where(Settlement.id == settlement_id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    settlement = db.session.execute(query.execution_options(populate_existing=True)).scalar()
    if settlement is None:
        raise SettlementNotFound("There is no such settlement.")
    return settlement


# --------------------------------------------------------------------------- periods


def period_length() -> timedelta:
    return timedelta(days=int(current_app.config.get("SETTLEMENT_PERIOD_DAYS") or 7))


def period_containing(moment: datetime) -> tuple[datetime, datetime]:
    """The (start, end) of the period ``moment`` falls in."""
    length = period_length()
    count = (moment - PERIOD_ANCHOR) // length
    start = PERIOD_ANCHOR + count * length
    return start, start + length


def last_complete_period(now: datetime) -> tuple[datetime, datetime]:
    """The most recent period that has ended by ``now``."""
    start, _end = period_containing(now)
    return start - period_length(), start


# --------------------------------------------------------------------------- budget


def budget_row(period_end: datetime, *, lock: bool = False) -> SettlementBudget:
    """The period's budget row, made on first use; locked on request."""
    insert = (
        postgresql.insert(SettlementBudget)
        if db.session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(SettlementBudget)
    )
    db.session.execute(insert.values(period_end=period_end).on_conflict_do_nothing())
    query = select(SettlementBudget).where(SettlementBudget.period_end == period_end)
    if lock and db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.execute(query.execution_options(populate_existing=True)).scalar_one()


def budget_amount(row: SettlementBudget | None) -> int | None:
    """The cap in pence for the row's period (None = no cap)."""
    if row is not None and row.amount_pence is not None:
        return row.amount_pence
    default = current_app.config.get("SETTLEMENT_BUDGET_PENCE")
    return None if default in (None, "") else int(default)


def committed_pence(period_end: datetime) -> int:
    """What the period's admitted settlements (not held, not cancelled) cost."""
    return int(
        db.session.execute(
            select(func.coalesce(func.sum(Settlement.amount_pence), 0)).where(
                Settlement.period_end == period_end,
                Settlement.status != S.CANCELLED.value,
                Settlement.hold_reason.is_(None),
            )
        ).scalar()
    )


def admit(settlement: Settlement, budget: SettlementBudget) -> bool:
    """Hold ``settlement`` on the budget if paying it would exceed the cap; True if admitted."""
    cap = budget_amount(budget)
    spent = committed_pence(settlement.period_end)
    if settlement.hold_reason is None:
        spent -= settlement.amount_pence  # already counted
    if cap is not None and spent + settlement.amount_pence > cap:
        settlement.hold_reason = HoldReason.BUDGET.value
        db.session.flush()
        return False
    settlement.hold_reason = None
    db.session.flush()
    return True


def set_budget(actor: User, period_end: datetime, amount_pence: int | None) -> list[int]:
    """Council sets a period's budget (audited) and releases what now fits; flushes."""
    if amount_pence is not None and (
        isinstance(amount_pence, bool) or not isinstance(amount_pence, int) or amount_pence < 0
    ):
        raise InvalidRequest(
            "Enter the budget as a whole number of pence, 0 or more.",
            {"amount_pence": ["Enter a whole number of pence, 0 or more."]},
        )
    row = budget_row(period_end, lock=True)
    old = row.amount_pence
    row.amount_pence = amount_pence
    row.set_by_id = actor.id
    row.set_at = utcnow()
    record(
        actor,
        "settlement.budget_set",
        f"period:{period_end.isoformat()}",
        details={"from": old, "to": amount_pence},
    )
    db.session.flush()
    return release_held(period_end, row)


def release_held(period_end: datetime, budget: SettlementBudget) -> list[int]:
    """Admit held settlements of the period, oldest first, while the budget allows."""
    released = []
    held = db.session.execute(
        select(Settlement)
        .where(
            Settlement.period_end == period_end,
            Settlement.status == S.PENDING.value,
            Settlement.hold_reason == HoldReason.BUDGET.value,
        )
        .order_by(Settlement.id)
    ).scalars()
    for settlement in held:
        if admit(settlement, budget):
            released.append(settlement.id)
    # Admitted ones that no longer fit (budget lowered) are not taken back once submitted;
    # pending ones are held again, newest first, until the admitted total fits.
    cap = budget_amount(budget)
    if cap is not None:
        admitted = db.session.execute(
            select(Settlement)
            .where(
                Settlement.period_end == period_end,
                Settlement.status == S.PENDING.value,
                Settlement.hold_reason.is_(None),
            )
            .order_by(Settlement.id.desc())
        ).scalars()
        for settlement in admitted:
            if committed_pence(period_end) <= cap:
                break
            settlement.hold_reason = HoldReason.BUDGET.value
            db.session.flush()
    return released


@dataclass
class BudgetView:
    """A period's budget as council sees it."""

    period_end: datetime
    cap: int | None
    committed: int
    held: int
    held_count: int

    @property
    def shortfall(self) -> int:
        """How much more the budget needs for every held settlement to be paid."""
        if self.cap is None or not self.held:
            return 0
        return max(0, self.committed + self.held - self.cap)


def budget_view(period_end: datetime) -> BudgetView:
    row = db.session.execute(
        select(SettlementBudget).where(SettlementBudget.period_end == period_end)
    ).scalar()
    held, count = db.session.execute(
        select(func.coalesce(func.sum(Settlement.amount_pence), 0), func.count()).where(
            Settlement.period_end == period_end,
            Settlement.status == S.PENDING.value,
            Settlement.hold_reason == HoldReason.BUDGET.value,
        )
    ).one()
    return BudgetView(
        period_end, budget_amount(row), committed_pence(period_end), int(held), int(count)
    )


# --------------------------------------------------------------------------- making them


@dataclass
class SettleReport:
    created: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    skipped_partners: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None

    def summary(self) -> str:
        return (
            f"Period {self.period_start:%Y-%m-%d} to {self.period_end:%Y-%m-%d}: "
            f"{len(self.created)} settlements made, {len(self.held)} waiting on the budget, "
            f"{self.skipped_partners} partners already settled."
        )


def cancel_window() -> timedelta:
    minutes = int(current_app.config.get("REDEMPTION_CANCEL_WINDOW_MINUTES") or 0)
    return timedelta(minutes=minutes)


def unsettled_redemptions(partner_id: int | None, cutoff: datetime):
    """Standing redemptions taken before ``cutoff`` and not in any settlement."""
    query = (
        select(Redemption)
        .outerjoin(SettlementRedemption, SettlementRedemption.redemption_id == Redemption.id)
        .where(
            SettlementRedemption.id.is_(None),
            Redemption.status == RedemptionStatus.COMPLETED.value,
            Redemption.created_at < cutoff,
        )
    )
    if partner_id is not None:
        query = query.where(Redemption.partner_id == partner_id)
    return query


def create_settlements(
    now: datetime | None = None, *, period_end: datetime | None = None
) -> SettleReport:
    """Make one settlement per partner for the last complete period (or ``period_end``).

    Each partner's settlement is made and committed in its own transaction (so a crash
    keeps the ones made, and the next run makes the rest). Safe to run twice or in two
    workers at once: the second finds each partner's settlement made (UNIQUE partner and
    period) or its redemptions taken (UNIQUE redemption), and skips it.
    """
    now = now or utcnow()
    if period_end is None:
        period_start, period_end = last_complete_period(now)
    else:
        period_start = period_end - period_length()
    # Staff may still cancel a redemption at the till for a few minutes: leave those.
    cutoff = min(period_end, now - cancel_window())
    report = SettleReport(period_start=period_start, period_end=period_end)
    partner_ids = list(
        db.session.execute(
            unsettled_redemptions(None, cutoff)
            .with_only_columns(Redemption.partner_id)
            .distinct()
            .order_by(Redemption.partner_id)
        ).scalars()
    )
    db.session.rollback()
    for partner_id in partner_ids:
        try:
            settlement = settle_partner(partner_id, period_start, period_end, cutoff, now)
            db.session.commit()
        except IntegrityError:
            # Another run settled this partner (or these redemptions) first.
            db.session.rollback()
            settlement = None
        if settlement is None:
            report.skipped_partners += 1
            continue
        report.created.append(settlement.id)
        if settlement.hold_reason:
            report.held.append(settlement.id)
    db.session.remove()
    return report


def settle_partner(
    partner_id: int, period_start: datetime, period_end: datetime, cutoff: datetime, now
) -> Settlement | None:
    """Make the partner's settlement for the period (None if made already). Flushes."""
    from rewards import operations as ledger

    exists = db.session.execute(
        select(Settlement.id).where(
            Settlement.partner_id == partner_id, Settlement.period_end == period_end
        )
    ).scalar()
    if exists is not None:
        return None
    # Lock the redemptions (a council reversal locks the same rows) and read them again.
    query = unsettled_redemptions(partner_id, cutoff).order_by(Redemption.id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Redemption)
    redemptions = list(db.session.execute(query).scalars())
    if not redemptions:
        return None
    partner = db.session.get(Partner, partner_id)
    credits = sum(r.credits for r in redemptions)
    amount = sum(r.credits * r.settlement_rate_pence for r in redemptions)
    account = ledger.partner_account(partner.account_key, partner.name)
    transaction = ledger.settle(
        account.id,
        credits,
        idempotency_key=f"settlement:{partner_id}:{period_end:%Y%m%dT%H%M}",
        description=f"settlement for {period_start:%d %b} to {period_end:%d %b %Y}",
    )
    budget = budget_row(period_end, lock=True)
    settlement = Settlement(
        partner_id=partner_id,
        period_start=period_start,
        period_end=period_end,
        credits=credits,
        redemption_count=len(redemptions),
        amount_pence=amount,
        status=S.PENDING.value,
        hold_reason=HoldReason.BUDGET.value,  # until admitted below
        ledger_transaction_id=transaction.id,
        transfer_attempt=0,
        attempts=0,
        created_at=now,
    )
    db.session.add(settlement)
    db.session.flush()
    db.session.add_all(
        [SettlementRedemption(settlement_id=settlement.id, redemption_id=r.id) for r in redemptions]
    )
    db.session.flush()
    admit(settlement, budget)
    return settlement


def cancel_settlement(actor: User, settlement: Settlement, reason: str) -> Settlement:
    """Council cancels an unpaid settlement: credits go back to the partner's account and
    its redemptions are settled again next period. Audited; flushes."""
    from rewards import operations as ledger

    reason = checked_text(reason, "reason", 500)
    if not reason:
        raise InvalidRequest("Say why.", {"reason": ["Enter a reason."]})
    settlement = lock_settlement(settlement.id)
    transition(settlement, S.CANCELLED)
    ledger.reverse(
        settlement.ledger_transaction_id,
        reason=reason,
        idempotency_key=f"settlement-cancel:{settlement.id}",
        actor_id=actor.id,
    )
    db.session.execute(
        SettlementRedemption.__table__.delete().where(
            SettlementRedemption.settlement_id == settlement.id
        )
    )
    settlement.hold_reason = None
    record(actor, "settlement.cancelled", f"settlement:{settlement.id}", reason=reason)
    db.session.flush()
    return settlement


def retry_settlement(actor: User, settlement: Settlement) -> Settlement:
    """Council asks for another try of a failed payment now (with a fresh transfer key
    when Stripe refused or reversed the last one). Audited; flushes."""
    settlement = lock_settlement(settlement.id)
    if settlement.status != S.FAILED.value:
        raise IllegalTransition(settlement.id, settlement.status, S.SUBMITTED.value)
    settlement.attempts = 0
    settlement.next_attempt_at = utcnow()
    record(actor, "settlement.retry", f"settlement:{settlement.id}")
    db.session.flush()
    return settlement


def mark_batch_paid(actor: User, batch_id: int, reference: str = "") -> PaymentBatch:
    """Council marks a payment file paid: every settlement in it becomes paid. Audited."""
    reference = checked_text(reference, "reference", 100) or None
    query = select(PaymentBatch).where(PaymentBatch.id == batch_id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    batch = db.session.execute(query.execution_options(populate_existing=True)).scalar()
    if batch is None:
        raise NotFoundError("There is no such payment file.", "batch_not_found")
    if batch.status == BatchStatus.PAID.value:
        raise BatchAlreadyPaid(f"Payment file {batch.id} was already marked paid.")
    now = utcnow()
    ids = db.session.execute(
        select(Settlement.id).where(Settlement.payment_batch_id == batch.id)
    ).scalars()
    for settlement_id in list(ids):
        settlement = lock_settlement(settlement_id)
        if settlement.status == S.SUBMITTED.value:
            transition(settlement, S.PAID, now)
    batch.status = BatchStatus.PAID.value
    batch.paid_at = now
    batch.paid_by_id = actor.id
    batch.reference = reference
    record(
        actor,
        "settlement.batch_paid",
        f"payment_batch:{batch.id}",
        details={"total_pence": batch.total_pence, "reference": batch.reference},
    )
    db.session.flush()
    return batch


def set_stripe_status(partner_id: int, account: dict) -> StripeConnectedAccount:
    """Record what Stripe says about a partner's connected account. Flushes."""
    row = db.session.execute(
        select(StripeConnectedAccount).where(StripeConnectedAccount.partner_id == partner_id)
    ).scalar()
    if row is None:
        row = StripeConnectedAccount(partner_id=partner_id, account_id=account["id"])
        db.session.add(row)
    row.details_submitted = bool(account.get("details_submitted"))
    row.payouts_enabled = bool(account.get("payouts_enabled"))
    row.updated_at = utcnow()
    db.session.execute(
        update(Partner)
        .where(Partner.id == partner_id)
        .values(stripe_account_id=account["id"])
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return row


# --------------------------------------------------------------------------- commands

partners_cli = AppGroup("partners", help="Partner settlement and payment.")


@partners_cli.command("settle")
@click.option(
    "--through-now",
    is_flag=True,
    help="Settle up to now (less the cancel window) instead of the last complete period.",
)
@click.option("--no-pay", is_flag=True, help="Make settlements but send no payments.")
def settle_command(through_now: bool, no_pay: bool) -> None:
    """Make this period's settlements, then pay what is due (one pass; safe to run again)."""
    from partners.payments import pay_due_settlements

    now = utcnow()
    period_end = None
    if through_now:
        _start, period_end = period_containing(now)
    report = create_settlements(now, period_end=period_end)
    click.echo(report.summary())
    if not no_pay:
        paid = pay_due_settlements()
        click.echo(paid.summary())


__all__ = [
    "IllegalTransition",
    "PaymentBatch",
    "Settlement",
    "SettlementBudget",
    "SettlementRedemption",
    "SettlementStatus",
    "StripeConnectedAccount",
    "StripeEvent",
]
