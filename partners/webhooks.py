"""The Stripe webhook endpoint: a trigger to look again, never a source of truth.

``POST /webhooks/stripe``:

1. verifies the ``Stripe-Signature`` header over the raw body with
   ``STRIPE_WEBHOOK_SECRET`` (a tampered body, a wrong secret, or a timestamp older than
   ``STRIPE_WEBHOOK_TOLERANCE_SECONDS`` is refused with 400);
2. records the event id once (``StripeEvent``, UNIQUE): a replayed event is answered 200
   and changes nothing;
3. re-fetches the object from Stripe (the event's copy may be stale or out of order) and
   moves the settlement or connected account to what Stripe says now, in the same database
   transaction as the event row. A ``payout.failed`` (the event names the connected
   ``account``) fails the settlements whose transfers that payout carried
   (``partners.payments.note_payout_failure``). If anything fails the whole transaction
   is rolled back and the answer is 500, so Stripe sends the event again later.
"""

from __future__ import annotations

import json
import logging

import stripe
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from core.extensions import csrf, db
from partners.payments import apply_transfer, as_dict, note_payout_failure, stripe_client
from partners.settlement import StripeConnectedAccount, StripeEvent, set_stripe_status

log = logging.getLogger(__name__)

webhooks_bp = Blueprint("stripe_webhooks", __name__)

TRANSFER_EVENTS = {"transfer.created", "transfer.updated", "transfer.reversed"}


def refuse(code: str, message: str, status: int = 400):
    return jsonify({"error": {"code": code, "message": message}}), status


@webhooks_bp.post("/webhooks/stripe")
@csrf.exempt
def stripe_webhook():
    """Receive one Stripe event (see the module's docstring)."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        return refuse("webhooks_not_configured", "STRIPE_WEBHOOK_SECRET is not set.", 503)
    payload = request.get_data(cache=False, as_text=False)
    header = request.headers.get("Stripe-Signature", "")
    tolerance = int(current_app.config.get("STRIPE_WEBHOOK_TOLERANCE_SECONDS") or 300)
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), header, secret, tolerance=tolerance
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
        log.warning("Stripe webhook refused: %s", error)
        return refuse("invalid_signature", "The signature does not match or is too old.")
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_"):
        return refuse("invalid_event", "This is not a Stripe event.")
    obj = (event.get("data") or {}).get("object") or {}
    if not record_event(event["id"], str(event.get("type", "")), str(obj.get("id", ""))):
        return jsonify({"received": True, "duplicate": True})
    try:
        outcome = handle(event)
        row = db.session.execute(
            select(StripeEvent).where(StripeEvent.event_id == event["id"])
        ).scalar_one()
        row.outcome = outcome[:200]
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("Stripe event %s could not be handled; Stripe will retry", event["id"])
        return refuse("not_handled", "The event could not be handled now.", 500)
    return jsonify({"received": True, "outcome": outcome})


def record_event(event_id: str, type_: str, object_id: str) -> bool:
    """Insert the event's row; False if it was received before."""
    insert = (
        postgresql.insert(StripeEvent)
        if db.session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(StripeEvent)
    )
    inserted = db.session.execute(
        insert.values(event_id=event_id[:64], type=type_[:60], object_id=object_id[:64], outcome="")
        .on_conflict_do_nothing()
        .returning(StripeEvent.id)
    ).scalar()
    if inserted is None:
        db.session.rollback()
        return False
    return True


def handle(event: dict) -> str:
    """Re-fetch what the event is about and act on it; return what was done."""
    type_ = event.get("type", "")
    obj = (event.get("data") or {}).get("object") or {}
    client = stripe_client()
    if type_ in TRANSFER_EVENTS:
        transfer = as_dict(client.v1.transfers.retrieve(obj["id"]))
        return apply_transfer(transfer)
    if type_ == "account.updated":
        account = as_dict(client.v1.accounts.retrieve(obj["id"]))
        row = db.session.execute(
            select(StripeConnectedAccount).where(StripeConnectedAccount.account_id == account["id"])
        ).scalar()
        if row is None:
            return "unknown account"
        set_stripe_status(row.partner_id, account)
        return f"account payouts_enabled={bool(account.get('payouts_enabled'))}"
    if type_ == "payout.failed":
        account_id = event.get("account")
        if not account_id:
            return "no account"
        payout = as_dict(
            client.v1.payouts.retrieve(obj["id"], options={"stripe_account": account_id})
        )
        return note_payout_failure(client, account_id, payout)
    return "ignored"
