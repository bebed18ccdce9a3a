"""Credit expiry: the batch job, reminders before credits expire, and hardship extensions.

Design:

- ``expire_due_lots`` expires what is left of every lot past its date (plus
  ``CREDIT_EXPIRY_GRACE_DAYS``) through ``rewards.operations.expire_lots``, a batch at a
  time, each lot with the idempotency key ``expire:lot:<id>`` (a lot whose expiry was
  reversed is expired again under a key naming the reversal). It walks the due lots in id
  order, ``batch_size`` at a time, and commits after each batch: memory stays flat however
  many lots are due, and a run killed halfway keeps the batches it committed; the next run
  starts from what is left (``remaining > 0``). On PostgreSQL each batch is claimed with
  ``SELECT ... FOR UPDATE SKIP LOCKED``, so two runs at once work on different lots instead
  of queueing behind each other; on SQLite (one writer at a time) the per-lot idempotency
  key and ``remaining`` make a second run a no-op for lots the first has done.
- ``send_expiry_reminders`` emails residents N days before credits expire (default 30 and
  7), once per lot and threshold: an ``ExpiryReminder`` row per (lot, threshold) is
  inserted with ``ON CONFLICT DO NOTHING`` in the same transaction as the outbox email, so
  an email goes out only with the rows that say it went, and two runs never send twice.
- ``extend_lots`` is council staff's hardship extension: a resident's live lots get a later
  expiry date, with a reason, audited; their reminders start again from the new date.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.cli import AppGroup
from flask_login import current_user
from sqlalchemy import (
    ForeignKey,
    Integer,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from core.audit import record
from core.errors import DomainError, InvalidRequest, checked_text
from core.extensions import db
from core.formatting import short_date
from core.mail import queue_email
from core.models import Role, User
from core.security import roles_required
from core.timeutil import UTCDateTime, utcnow
from rewards import operations as ops
from rewards.models import (
    Account,
    AccountKind,
    CreditLot,
)

log = logging.getLogger(__name__)

#: The longest hardship extension council staff may give at once.
MAX_EXTENSION_DAYS = 730


class ExpiryReminder(db.Model):
    """A reminder sent (or being sent) for one lot at one threshold: never twice."""

    __tablename__ = "credit_expiry_reminders"
    __table_args__ = (
        UniqueConstraint("lot_id", "days_before", name="uq_credit_expiry_reminders_lot_days"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The lot whose credits are about to expire.
    lot_id: Mapped[int] = mapped_column(ForeignKey("credit_lots.id", ondelete="CASCADE"))
    #: The threshold this reminder is for (30 = "30 days before").
    days_before: Mapped[int] = mapped_column(Integer)
    #: The lot's expiry date the reminder spoke of.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the reminder was queued in the outbox.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------- expiry


@dataclass
class ExpiryReport:
    """What one run did."""

    lots_expired: int = 0
    credits_expired: int = 0
    lots_skipped: int = 0
    batches: int = 0
    retried_batches: int = 0

    def summary(self) -> str:
        return (
            f"Expired {self.credits_expired} credits from {self.lots_expired} lots "
            f"in {self.batches} batches ({self.lots_skipped} lots had nothing left)."
        )


def grace() -> timedelta:
    return timedelta(days=int(current_app.config.get("CREDIT_EXPIRY_GRACE_DAYS") or 0))


def expire_due_lots(
    now: datetime | None = None,
    *,
    batch_size: int | None = None,
    max_batches: int | None = None,
    on_batch=None,
) -> ExpiryReport:
    """Expire what is left of every lot due at ``now`` (minus the grace period).

    Commits after each batch. Safe to run twice, in two processes at once, or again after
    a run was killed: each lot is expired exactly once (its idempotency key). ``on_batch``
    (tests, benchmarks) is called after each commit with the report so far.
    """
    now = now or utcnow()
    cutoff = now - grace()
    batch_size = batch_size or int(current_app.config.get("CREDIT_EXPIRY_BATCH_SIZE") or 500)
    report = ExpiryReport()
    after_id = 0
    ops.system_account(AccountKind.EXPIRED)  # opened once, not by two batches at once
    db.session.commit()
    postgres = db.session.get_bind().dialect.name == "postgresql"
    while max_batches is None or report.batches < max_batches:
        if not postgres:
            # SQLite has one writer at a time: take the write lock before reading the batch,
            # so what we read is what we expire (another run waits for our commit).
            _take_sqlite_write_lock()
        claim = (
            select(CreditLot.id, CreditLot.remaining)
            .where(
                CreditLot.remaining > 0,
                CreditLot.expires_at <= cutoff,
                CreditLot.id > after_id,
            )
            .order_by(CreditLot.id)
            .limit(batch_size)
        )
        if postgres:
            claim = claim.with_for_update(skip_locked=True)
        claimed = db.session.execute(claim).all()
        if not claimed:
            db.session.rollback()
            break
        lot_ids = [lot_id for lot_id, _remaining in claimed]
        try:
            expired = ops.expire_lots(lot_ids, now)
            db.session.commit()
        except OperationalError as error:
            # A deadlock with a concurrent reversal touching the same lot: PostgreSQL chose
            # us. Nothing of the batch was kept; go round again from the same place.
            db.session.rollback()
            report.retried_batches += 1
            log.warning("Expiry batch after lot %s retried: %s", after_id, error)
            if report.retried_batches > 10:
                raise
            continue
        report.batches += 1
        report.lots_expired += len(expired)
        report.credits_expired += sum(expired.values())
        report.lots_skipped += len(lot_ids) - len(expired)
        after_id = lot_ids[-1]
        if on_batch is not None:
            on_batch(report)
    db.session.remove()
    return report


def _take_sqlite_write_lock() -> None:
    """A no-op write: SQLite's database lock is ours until the batch commits."""
    db.session.execute(
        update(Account)
        .where(Account.key == f"scheme:{AccountKind.EXPIRED.value}")
        .values(balance=Account.balance)
        .execution_options(synchronize_session=False)
    )


# --------------------------------------------------------------------------- reminders


def reminder_days() -> list[int]:
    """The thresholds, largest first (``CREDIT_EXPIRY_REMINDER_DAYS``, default 30 and 7)."""
    days = current_app.config.get("CREDIT_EXPIRY_REMINDER_DAYS") or []
    return sorted({int(d) for d in days if int(d) > 0}, reverse=True)


@dataclass
class ReminderReport:
    emails: int = 0
    lots: int = 0
    residents: list[int] = field(default_factory=list)


def send_expiry_reminders(now: datetime | None = None, *, batch_size: int = 500) -> ReminderReport:
    """Queue one email per resident whose credits reach a reminder threshold; commits.

    A lot is reminded once per threshold. When a lot is already inside several thresholds
    (the job did not run for a while, or the lot came as a gift close to its date) only
    the nearest is spoken of, and the others are marked as done.
    """
    now = now or utcnow()
    thresholds = reminder_days()
    report = ReminderReport()
    if not thresholds:
        return report
    horizon = now + timedelta(days=thresholds[0])
    after_id = 0
    while True:
        rows = db.session.execute(
            select(
                CreditLot.id,
                CreditLot.remaining,
                CreditLot.expires_at,
                Account.user_id,
                User.email,
                User.display_name,
            )
            .join(Account, Account.id == CreditLot.account_id)
            .join(User, User.id == Account.user_id)
            .where(
                Account.kind == AccountKind.RESIDENT.value,
                CreditLot.remaining > 0,
                CreditLot.expires_at > now,
                CreditLot.expires_at <= horizon,
                CreditLot.id > after_id,
            )
            .order_by(CreditLot.id)
            .limit(batch_size)
        ).all()
        if not rows:
            break
        after_id = rows[-1].id
        by_resident: dict[int, list] = defaultdict(list)
        for row in rows:
            due = [d for d in thresholds if row.expires_at <= now + timedelta(days=d)]
            claimed = _claim_reminders(row.id, row.expires_at, due)
            if due[-1] in claimed:
                by_resident[row.user_id].append(row)
        for user_id, lots in by_resident.items():
            queue_email(lots[0].email, *reminder_email(lots[0].display_name, lots, now))
            report.emails += 1
            report.lots += len(lots)
            report.residents.append(user_id)
        db.session.commit()
    db.session.remove()
    return report


def _claim_reminders(lot_id: int, expires_at: datetime, days: list[int]) -> set[int]:
    """Insert the (lot, threshold) rows not there yet; return the thresholds inserted."""
    insert = (
        postgresql.insert(ExpiryReminder)
        if db.session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(ExpiryReminder)
    )
    claimed = set()
    for day in days:
        inserted = db.session.execute(
            insert.values(
                lot_id=lot_id, days_before=day, expires_at=expires_at, created_at=utcnow()
            )
            .on_conflict_do_nothing()
            .returning(ExpiryReminder.id)
        ).scalar()
        if inserted is not None:
            claimed.add(day)
    return claimed


def reminder_email(name: str, lots: list, now: datetime) -> tuple[str, str]:
    """Subject and plain-text body of a reminder."""
    total = sum(lot.remaining for lot in lots)
    soonest = min(lot.expires_at for lot in lots)
    days = max(0, (soonest - now).days)
    lines = [
        f"Hello {name},",
        "",
        f"{total} of your time credits will expire soon if you do not use them:",
        "",
    ]
    for lot in sorted(lots, key=lambda lot: lot.expires_at):
        lines.append(f"  - {lot.remaining} credits on {short_date(lot.expires_at)}")
    lines += [
        "",
        "You can spend them with a local partner, or give them to someone else or to a "
        "community pot, from your wallet.",
        "",
        "If you cannot use them in time for a reason outside your control, contact the "
        "scheme team: they can extend them.",
    ]
    subject = f"{total} time credits expire in {days} days" if days else "Credits expire today"
    return subject, "\n".join(lines)


# --------------------------------------------------------------------------- hardship


@dataclass
class Extension:
    lots: int
    credits: int
    new_expiry: datetime
    #: Each lot extended: ``{"lot_id", "remaining", "old", "new"}``.
    changes: list[dict] = field(default_factory=list)


class NothingToExtend(DomainError):
    """The resident has no live credits (of those named) that the extension would change."""

    status = 409
    code = "nothing_to_extend"


def extend_lots(
    actor: User,
    resident_id: int,
    *,
    days: int | None = None,
    reason: str,
    until: datetime | None = None,
    lot_ids: list[int] | None = None,
    audit_details: dict | None = None,
) -> Extension:
    """Give a resident's live credits ``days`` more (council staff; reason required; audited).

    Every lot with credits left, including lots already past their date that the expiry
    job has not reached, gets ``max(expires_at, now) + days``; or, given ``until`` instead
    of ``days``, every such lot expiring before ``until`` gets ``until``. ``lot_ids`` limits
    it to those of the resident's lots (one that is not theirs is refused). Their reminders
    are cleared so the resident is reminded again before the new date. ``audit_details``
    are added to the audit entry's. Flushes, never commits.
    """
    reason = checked_text(reason, "reason", 500)
    if not reason:
        raise InvalidRequest("Say why the credits are extended.", {"reason": ["Enter a reason."]})
    now = utcnow()
    if until is not None:
        if days is not None:
            raise InvalidRequest(
                "Give a number of days or a new date, not both.",
                {"days": ["Leave this out when giving a new date."]},
            )
        if until.tzinfo is None or not now < until <= now + timedelta(days=MAX_EXTENSION_DAYS):
            raise InvalidRequest(
                f"The new date must be in the next {MAX_EXTENSION_DAYS} days.",
                {
                    "new_expires_at": [
                        f"Enter a time (with offset) in the next {MAX_EXTENSION_DAYS} days."
                    ]
                },
            )
    elif isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise InvalidRequest(
            f"Extend by 1 to {MAX_EXTENSION_DAYS} days.",
            {"days": [f"Enter a whole number of days from 1 to {MAX_EXTENSION_DAYS}."]},
        )
    wallet = ops.find_wallet(resident_id)
    if wallet is None:
        if lot_ids:
            raise InvalidRequest(
                "Those are not this resident's credits.", {"lot_ids": ["Not this resident's."]}
            )
        raise NothingToExtend("This resident has no credits to extend.")
    # Lock the wallet first, as every ledger operation does, so no spend or expiry of these
    # lots runs between our read and our write.
    statement = select(Account.id).where(Account.id == wallet.id)
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(statement.with_for_update())
    else:
        db.session.execute(
            update(Account).where(Account.id == wallet.id).values(balance=Account.balance)
        )
    query = select(CreditLot.id, CreditLot.remaining, CreditLot.expires_at).where(
        CreditLot.account_id == wallet.id
    )
    if lot_ids is not None:
        query = query.where(CreditLot.id.in_(set(lot_ids)))
    else:
        query = query.where(CreditLot.remaining > 0)
    rows = db.session.execute(query.order_by(CreditLot.id)).all()
    if lot_ids is not None and len(rows) != len(set(lot_ids)):
        others = sorted(set(lot_ids) - {row.id for row in rows})
        raise InvalidRequest(
            "Some of those lots are not this resident's credits.",
            {"lot_ids": [f"Not this resident's: {', '.join(map(str, others))}."]},
        )
    lots = [row for row in rows if row.remaining > 0]
    if until is not None:
        lots = [row for row in lots if row.expires_at < until]
    if not lots:
        raise NothingToExtend("This resident has no credits to extend.")
    changes = []
    for lot_id, remaining, expires_at in lots:
        new_date = until if until is not None else max(expires_at, now) + timedelta(days=days)
        changes.append(
            {"lot_id": lot_id, "remaining": remaining, "old": expires_at, "new": new_date}
        )
        db.session.execute(
            update(CreditLot)
            .where(CreditLot.id == lot_id)
            .values(expires_at=new_date)
            .execution_options(synchronize_session=False)
        )
    db.session.execute(
        delete(ExpiryReminder).where(ExpiryReminder.lot_id.in_([c["lot_id"] for c in changes]))
    )
    record(
        actor,
        "credits.extended",
        f"user:{resident_id}",
        reason=reason,
        details={
            "days": days,
            **({"until": until.isoformat()} if until is not None else {}),
            "lots": [
                {
                    "lot_id": c["lot_id"],
                    "remaining": c["remaining"],
                    "from": c["old"].isoformat(),
                    "to": c["new"].isoformat(),
                }
                for c in changes
            ],
            **(audit_details or {}),
        },
    )
    db.session.flush()
    return Extension(
        lots=len(changes),
        credits=sum(c["remaining"] for c in changes),
        new_expiry=min(c["new"] for c in changes),
        changes=changes,
    )


# --------------------------------------------------------------------------- commands

credits_cli = AppGroup("credits", help="Credit expiry and reminders.")


@credits_cli.command("expire")
@click.option("--batch-size", type=int, default=None, help="Lots per commit.")
def expire_command(batch_size: int | None) -> None:
    """Expire what is left of lots past their date (one pass; safe to run again)."""
    report = expire_due_lots(batch_size=batch_size)
    click.echo(report.summary())


@credits_cli.command("remind")
def remind_command() -> None:
    """Queue reminder emails for credits about to expire (one pass)."""
    report = send_expiry_reminders()
    click.echo(f"Queued {report.emails} reminder emails about {report.lots} lots.")


# --------------------------------------------------------------------------- pages

expiry_bp = Blueprint("expiry", __name__, template_folder="templates")


@expiry_bp.route("/council/residents/<int:user_id>/extend-credits", methods=["GET", "POST"])
@roles_required(Role.COUNCIL, Role.ADMIN)
def extend_page(user_id: int):
    """Council staff give a resident's credits more time (hardship), with a reason."""
    from rewards.wallet import live_lots

    resident = db.get_or_404(User, user_id)
    errors: dict[str, str] = {}
    values = {"days": "", "reason": ""}
    if request.method == "POST":
        values = {k: (request.form.get(k) or "").strip() for k in values}
        days = int(values["days"]) if values["days"].isdigit() else values["days"] or None
        try:
            done = extend_lots(current_user, resident.id, days=days, reason=values["reason"])
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            fields = getattr(error, "fields", {}) or {}
            errors = {name: messages[0] for name, messages in fields.items()} or {
                "days": error.message
            }
        else:
            flash(
                f"{done.credits} credits of {resident.display_name} now expire no sooner than "
                f"{short_date(done.new_expiry)}.",
                "success",
            )
            return redirect(url_for(".extend_page", user_id=resident.id))
    wallet = ops.find_wallet(resident.id)
    lots = live_lots(wallet.id) if wallet else []
    if request.method == "POST" and not errors:
        abort(400)
    return render_template(
        "expiry/extend.html", resident=resident, lots=lots, errors=errors, values=values
    ), (400 if errors else 200)
