"""Paying settlements: Stripe Connect transfers, or the local gateway's payment file.

- With ``STRIPE_SECRET_KEY`` set, a partner whose connected account can receive payouts is
  paid by a Stripe Transfer to that account. The transfer's ``Idempotency-Key`` is the
  settlement's ``transfer_key`` (``settlement-<id>-transfer-<n>``), and its
  ``transfer_group`` and ``metadata.settlement_id`` name the settlement, so a retry, a
  redelivered task or a worker killed in the middle of the call never pays twice, and a
  webhook can find the settlement from the transfer alone. The settlement row stays locked
  during the call: two workers never send the same settlement at once.
- Every other partner (and every partner when no key is set: the embedded default) is paid
  through a ``PaymentBatch``: one CSV payment file per run for the council's finance
  system; council staff mark the batch paid.
- Failures retry with exponential backoff (``SETTLEMENT_RETRY_BASE_SECONDS`` x 2^(n-1)),
  up to ``SETTLEMENT_MAX_ATTEMPTS``; after the last try the settlement stays failed for
  council to see. A network error, a 409 (the key still in use) or a refusal keeps the same
  key (the transfer may exist, or Stripe kept nothing for the key); only a 5xx, which
  Stripe keeps as the key's answer, moves to a new key, after checking by transfer group
  that no transfer for the settlement exists.
"""

from __future__ import annotations

import csv
import http.client
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import stripe
from flask import current_app
from sqlalchemy import or_, select, update

from core.extensions import db
from core.timeutil import utcnow
from partners.models import Partner, PayoutMethod
from partners.settlement import (
    PaymentBatch,
    Settlement,
    SettlementStatus,
    StripeConnectedAccount,
    lock_settlement,
    transition,
)

log = logging.getLogger(__name__)
S = SettlementStatus


# --------------------------------------------------------------------------- Stripe client


def stripe_enabled() -> bool:
    return bool(current_app.config.get("STRIPE_SECRET_KEY"))


def stripe_client() -> stripe.StripeClient:
    """A Stripe client for our key (and ``STRIPE_API_BASE``, tests' fake server)."""
    config = current_app.config
    base = config.get("STRIPE_API_BASE") or None
    return stripe.StripeClient(
        config["STRIPE_SECRET_KEY"],
        base_addresses={"api": base, "connect": base} if base else None,
        # Our own retries (with backoff, across runs) decide; the SDK tries once.
        max_network_retries=0,
        http_client=stripe.UrllibClient(),
    )


def as_dict(stripe_object) -> dict:
    """A StripeObject as plain dicts and lists."""
    return stripe_object.to_dict() if hasattr(stripe_object, "to_dict") else dict(stripe_object)


# --------------------------------------------------------------------------- onboarding


def connect_account(partner: Partner, *, refresh_url: str, return_url: str) -> str:
    """Open (once) the partner's Express account and return an onboarding link's URL."""
    from partners.settlement import set_stripe_status

    client = stripe_client()
    row = db.session.execute(
        select(StripeConnectedAccount).where(StripeConnectedAccount.partner_id == partner.id)
    ).scalar()
    if row is None:
        account = client.v1.accounts.create(
            params={
                "type": "express",
                "country": "GB",
                "email": partner.contact_email or None,
                "business_profile": {"name": partner.name},
                "capabilities": {"transfers": {"requested": True}},
                "metadata": {"partner_id": str(partner.id)},
            },
            options={"idempotency_key": f"partner-{partner.id}-account"},
        )
        row = set_stripe_status(partner.id, as_dict(account))
    link = client.v1.account_links.create(
        params={
            "account": row.account_id,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
    )
    return link.url


def refresh_account(partner_id: int) -> StripeConnectedAccount | None:
    """Re-read the partner's connected account from Stripe (return from onboarding)."""
    from partners.settlement import set_stripe_status

    row = db.session.execute(
        select(StripeConnectedAccount).where(StripeConnectedAccount.partner_id == partner_id)
    ).scalar()
    if row is None:
        return None
    account = stripe_client().v1.accounts.retrieve(row.account_id)
    return set_stripe_status(partner_id, as_dict(account))


# --------------------------------------------------------------------------- paying


@dataclass
class PaymentReport:
    transfers: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    batch_id: int | None = None
    batch_count: int = 0

    def summary(self) -> str:
        batch = f"payment file {self.batch_id} with {self.batch_count}" if self.batch_id else "no"
        return (
            f"{len(self.transfers)} Stripe transfers sent, {len(self.failed)} failed, "
            f"{batch} settlements for the council's finance system."
        )


def max_attempts() -> int:
    return int(current_app.config.get("SETTLEMENT_MAX_ATTEMPTS") or 5)


def backoff(attempts: int) -> timedelta:
    """How long to wait before try ``attempts + 1``: base x 2^(attempts - 1)."""
    base = int(current_app.config.get("SETTLEMENT_RETRY_BASE_SECONDS") or 60)
    return timedelta(seconds=base * 2 ** max(0, attempts - 1))


def due_condition(now: datetime):
    """Settlements to pay now: pending and not held, or failed with a retry due."""
    return or_(
        (Settlement.status == S.PENDING.value) & Settlement.hold_reason.is_(None),
        (Settlement.status == S.FAILED.value)
        & Settlement.next_attempt_at.is_not(None)
        & (Settlement.next_attempt_at <= now),
    )


def pays_by_stripe(partner_id: int) -> str | None:
    """The connected account to transfer to, or None for the payment file."""
    if not stripe_enabled():
        return None
    row = db.session.execute(
        select(Partner.payout_method, StripeConnectedAccount.account_id)
        .join(StripeConnectedAccount, StripeConnectedAccount.partner_id == Partner.id)
        .where(Partner.id == partner_id, StripeConnectedAccount.payouts_enabled.is_(True))
    ).first()
    if row is None or row.payout_method != PayoutMethod.STRIPE_CONNECT.value:
        return None
    return row.account_id


def pay_due_settlements(now: datetime | None = None, *, limit: int | None = None) -> PaymentReport:
    """Send every due settlement: Stripe transfers one by one, the rest in one payment file.

    Each settlement is claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), paid, and
    committed on its own. Safe to run twice, in two workers at once, or again after a
    worker died mid-call.
    """
    now = now or utcnow()
    report = PaymentReport()
    batch: PaymentBatch | None = None
    after_id = 0
    postgres = db.session.get_bind().dialect.name == "postgresql"
    while limit is None or len(report.transfers) + len(report.failed) < limit:
        query = (
            select(Settlement)
            .where(due_condition(now), Settlement.id > after_id)
            .order_by(Settlement.id)
            .limit(1)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True)
        settlement = db.session.execute(query.execution_options(populate_existing=True)).scalar()
        if settlement is None:
            db.session.rollback()
            break
        after_id = settlement.id
        if settlement.amount_pence == 0:
            # A partner paid 0p per credit: nothing to send, settled all the same.
            transition(settlement, S.SUBMITTED, now)
            transition(settlement, S.PAID, now)
            db.session.commit()
            continue
        destination = pays_by_stripe(settlement.partner_id)
        if destination is None:
            if batch is None:
                batch = PaymentBatch(created_at=now, settlement_count=0, total_pence=0)
                db.session.add(batch)
                db.session.flush()
            add_to_batch(settlement, batch, now)
            db.session.commit()
            report.batch_id, report.batch_count = batch.id, batch.settlement_count
            continue
        if send_transfer(settlement, destination, now):
            report.transfers.append(settlement.id)
        else:
            report.failed.append(settlement.id)
        db.session.commit()
    db.session.remove()
    return report


def add_to_batch(settlement: Settlement, batch: PaymentBatch, now: datetime) -> None:
    """Put the settlement in the payment file (submitted until council marks it paid)."""
    transition(settlement, S.SUBMITTED, now)
    settlement.payout_method = PayoutMethod.PAYMENT_FILE.value
    settlement.payment_batch_id = batch.id
    settlement.attempts += 1
    settlement.next_attempt_at = None
    batch.settlement_count += 1
    batch.total_pence += settlement.amount_pence
    db.session.flush()


def send_transfer(settlement: Settlement, destination: str, now: datetime) -> bool:
    """Transfer the settlement's amount to ``destination``; True if Stripe accepted it.

    The row is locked by the caller. Flushes; the caller commits.
    """
    transition(settlement, S.SUBMITTED, now)
    settlement.payout_method = PayoutMethod.STRIPE_CONNECT.value
    settlement.stripe_destination = destination
    settlement.attempts += 1
    client = stripe_client()
    if settlement.stripe_transfer_id is not None:
        # Sent before: unless Stripe reversed that transfer, its money is with the partner
        # (a payout of it failed, see ``note_payout_failure``) and another would pay twice.
        try:
            earlier = as_dict(client.v1.transfers.retrieve(settlement.stripe_transfer_id))
        except (stripe.StripeError, OSError, http.client.HTTPException) as error:
            detail = getattr(error, "user_message", None) or error or type(error).__name__
            fail(settlement, f"Could not check the earlier transfer: {detail}", now)
            return False
        if not (earlier.get("reversed") or earlier.get("amount_reversed", 0)):
            settlement.next_attempt_at = None
            settlement.last_error = None
            transition(settlement, S.PAID, now)
            return True
    try:
        transfer = client.v1.transfers.create(
            params={
                "amount": settlement.amount_pence,
                "currency": current_app.config.get("STRIPE_CURRENCY") or "gbp",
                "destination": destination,
                "transfer_group": settlement.transfer_group,
                "description": f"Civic Credits settlement {settlement.id}",
                "metadata": {
                    "settlement_id": str(settlement.id),
                    "partner_id": str(settlement.partner_id),
                },
            },
            options={"idempotency_key": settlement.transfer_key},
        )
    except (stripe.APIConnectionError, OSError, http.client.HTTPException) as error:
        # No answer (the SDK lets a connection closed mid-answer through as it is): the
        # transfer may exist. Retry later with the same key.
        detail = getattr(error, "user_message", None) or error or type(error).__name__
        fail(settlement, f"Could not reach Stripe: {detail}", now)
        return False
    except stripe.StripeError as error:
        status = getattr(error, "http_status", None) or 0
        if status >= 500:
            # Stripe keeps a 500 as the answer for this key: the next try needs a new key,
            # unless a transfer for the settlement exists after all.
            existing = find_transfer(client, settlement)
            if existing is not None:
                settlement.stripe_transfer_id = existing["id"]
                db.session.flush()
                return True
            settlement.transfer_attempt += 1
        # Anything else (a 409 while a request with this key is still running, e.g. from a
        # worker that died mid-call; a 429; a refused request, which Stripe does not keep)
        # is retried with the same key: a new key there could pay twice.
        fail(settlement, f"Stripe refused the transfer: {error.user_message or error}", now)
        return False
    settlement.stripe_transfer_id = transfer.id
    settlement.next_attempt_at = None
    settlement.last_error = None
    db.session.flush()
    return True


def find_transfer(client, settlement: Settlement) -> dict | None:
    """A live transfer already made for this settlement (by transfer group), if any."""
    try:
        listing = client.v1.transfers.list(params={"transfer_group": settlement.transfer_group})
    except stripe.StripeError:
        return None
    for transfer in listing.data:
        if not transfer.get("reversed"):
            return as_dict(transfer)
    return None


def fail(settlement: Settlement, message: str, now: datetime) -> None:
    """Mark failed; schedule the next try with backoff unless that was the last."""
    transition(settlement, S.FAILED, now)
    settlement.last_error = message[:1000]
    if settlement.attempts < max_attempts():
        settlement.next_attempt_at = now + backoff(settlement.attempts)
    else:
        settlement.next_attempt_at = None
    log.warning("Settlement %s payment failed: %s", settlement.id, message)
    db.session.flush()


# --------------------------------------------------------------------------- webhooks' side


def apply_transfer(transfer: dict, now: datetime | None = None) -> str:
    """Move the settlement a (re-fetched) transfer belongs to; return what was done.

    The transfer as Stripe has it now decides, not the event that told us to look, so
    events arriving late, twice or out of order all end in the same state.
    """
    now = now or utcnow()
    settlement_id = (transfer.get("metadata") or {}).get("settlement_id")
    if not settlement_id or not str(settlement_id).isdigit():
        return "not ours"
    settlement = db.session.get(Settlement, int(settlement_id))
    if settlement is None:
        return "unknown settlement"
    settlement = lock_settlement(settlement.id)
    if transfer.get("transfer_group") != settlement.transfer_group:
        return "transfer group does not match"
    reversed_ = bool(transfer.get("reversed")) or (
        transfer.get("amount_reversed", 0) >= transfer.get("amount", 1) > 0
    )
    if settlement.stripe_transfer_id not in (None, transfer["id"]):
        if reversed_:
            return "an earlier transfer, reversed"
        return "another transfer of this settlement"
    if settlement.stripe_transfer_id is None:
        # The worker that asked for it died before it could record it: adopt it.
        if settlement.status in (S.PENDING.value, S.FAILED.value):
            transition(settlement, S.SUBMITTED, now)
        settlement.stripe_transfer_id = transfer["id"]
        settlement.stripe_destination = transfer.get("destination")
        settlement.payout_method = PayoutMethod.STRIPE_CONNECT.value
    if reversed_:
        if settlement.status in (S.SUBMITTED.value, S.PAID.value):
            transition(settlement, S.FAILED, now)
            settlement.last_error = "Stripe reversed the transfer."
            settlement.next_attempt_at = None  # council decides
            settlement.transfer_attempt += 1
            db.session.flush()
            return "failed: transfer reversed"
        return f"already {settlement.status}"
    if settlement.status == S.SUBMITTED.value:
        transition(settlement, S.PAID, now)
        return "paid"
    return f"already {settlement.status}"


def note_payout_failure(client, account_id: str, payout: dict, now: datetime | None = None) -> str:
    """A (re-fetched) payout from a connected account to the partner's bank failed: note it
    for the partner and council, and fail the settlements whose transfers it carried.

    Which transfers a payout carried is Stripe's to say: the connected account's balance
    transactions paid out by it (``BalanceTransaction.list(payout=...)`` with the account's
    ``Stripe-Account``), whose ``payment`` sources (``py_...``) name the transfer that made
    them (``source_transfer``). Each settlement paid (or still submitted: the payout's event
    came before the transfer's) by one of those transfers becomes failed with Stripe's
    reason. The transfer stands, so the money waits in the partner's Stripe balance and a
    new transfer would pay twice: as for a reversed transfer, no automatic try is scheduled
    and council decides (``send_transfer`` then confirms the standing transfer instead of
    sending another; Stripe pays the balance out once the partner's bank details work).
    """
    now = now or utcnow()
    row = db.session.execute(
        select(StripeConnectedAccount).where(StripeConnectedAccount.account_id == account_id)
    ).scalar()
    if row is None:
        return "unknown account"
    if payout.get("status") != "failed":
        return f"payout is {payout.get('status')}"
    message = payout.get("failure_message") or payout.get("failure_code") or "payout failed"
    db.session.execute(
        update(StripeConnectedAccount)
        .where(StripeConnectedAccount.id == row.id)
        .values(last_payout_failure=f"{payout['id']}: {message}"[:1000], updated_at=now)
        .execution_options(synchronize_session=False)
    )
    code = f" ({payout['failure_code']})" if payout.get("failure_code") else ""
    reason = (
        f"Stripe could not pay out to the partner's bank (payout {payout['id']}): "
        f"{message}{code}. The money is in their Stripe balance until their bank details "
        "are put right; a retry confirms the transfer without paying again."
    )
    failed = []
    for transfer_id in sorted(payout_transfer_ids(client, account_id, payout["id"])):
        settlement = settlement_of_transfer(client, transfer_id, now)
        if settlement is None or settlement.partner_id != row.partner_id:
            continue
        if settlement.status in (S.SUBMITTED.value, S.PAID.value):
            transition(settlement, S.FAILED, now)
            settlement.last_error = reason[:1000]
            settlement.next_attempt_at = None  # council decides, as for a reversal
            db.session.flush()
            failed.append(settlement.id)
    if not failed:
        return "payout failure noted"
    return f"payout failure noted; settlements failed: {', '.join(map(str, failed))}"


def payout_transfer_ids(client, account_id: str, payout_id: str) -> set[str]:
    """The transfers whose money the connected account's automatic payout carried."""
    found: set[str] = set()
    params: dict = {"payout": payout_id, "type": "payment", "expand": ["data.source"], "limit": 100}
    while True:
        page = as_dict(
            client.v1.balance_transactions.list(
                params=params, options={"stripe_account": account_id}
            )
        )
        data = page.get("data") or []
        for txn in data:
            source = txn.get("source")
            transfer = source.get("source_transfer") if isinstance(source, dict) else None
            if isinstance(transfer, dict):  # expanded further
                transfer = transfer.get("id")
            if isinstance(transfer, str) and transfer:
                found.add(transfer)
        if not page.get("has_more") or not data:
            return found
        params = {**params, "starting_after": data[-1]["id"]}


def settlement_of_transfer(client, transfer_id: str, now: datetime) -> Settlement | None:
    """The settlement paid by ``transfer_id``, locked; a transfer the worker never recorded
    (it died after Stripe made it) is adopted from its metadata first, as its
    ``transfer.created`` event would."""
    settlement_id = db.session.execute(
        select(Settlement.id).where(Settlement.stripe_transfer_id == transfer_id)
    ).scalar()
    if settlement_id is None:
        apply_transfer(as_dict(client.v1.transfers.retrieve(transfer_id)), now)
        settlement_id = db.session.execute(
            select(Settlement.id).where(Settlement.stripe_transfer_id == transfer_id)
        ).scalar()
        if settlement_id is None:
            return None  # not ours
    return lock_settlement(settlement_id)


# --------------------------------------------------------------------------- payment file

PAYMENT_FILE_COLUMNS = [
    "batch_id",
    "settlement_id",
    "partner_id",
    "partner_name",
    "period_start",
    "period_end",
    "credits",
    "redemptions",
    "amount_pence",
    "amount_gbp",
    "reference",
]


def payment_file_csv(batch: PaymentBatch) -> str:
    """The batch as CSV for the council's finance system (one line per settlement)."""
    from partners.views import csv_safe

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(PAYMENT_FILE_COLUMNS)
    rows = db.session.execute(
        select(Settlement, Partner.name)
        .join(Partner, Partner.id == Settlement.partner_id)
        .where(Settlement.payment_batch_id == batch.id)
        .order_by(Settlement.id)
    ).all()
    for settlement, name in rows:
        writer.writerow(
            [
                batch.id,
                settlement.id,
                settlement.partner_id,
                csv_safe(name),
                settlement.period_start.date().isoformat(),
                settlement.period_end.date().isoformat(),
                settlement.credits,
                settlement.redemption_count,
                settlement.amount_pence,
                f"{settlement.amount_pence / 100:.2f}",
                f"CIVIC-CREDITS-S{settlement.id}",
            ]
        )
    return buffer.getvalue()
