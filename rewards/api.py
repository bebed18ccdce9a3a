"""The wallet's JSON API (API.md): balance and lots, history, gifts, community pots."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import marshmallow as ma
from flask import g
from flask.views import MethodView
from sqlalchemy import select

from core.apiframework import MAX_INT, ApiBlueprint, Id, PageArgsSchema, RequestSchema, bearer_doc
from core.errors import ConflictError, InvalidRequest, NotFoundError
from core.extensions import db
from core.models import AuditEntry, Role, User
from core.security import api_auth
from rewards import operations as ops
from rewards.models import Account, AccountKind, Entry
from rewards.wallet import history, live_lots, next_expiry

wallet_api = ApiBlueprint(
    "wallet", __name__, url_prefix="/api/v1", description="Residents' credits and gifts"
)


class LotSchema(ma.Schema):
    amount = ma.fields.Integer(required=True)
    remaining = ma.fields.Integer(required=True)
    earned_at = ma.fields.DateTime(required=True)
    expires_at = ma.fields.DateTime(required=True)
    days_left = ma.fields.Integer(
        required=True, metadata={"description": "Whole days until the lot expires"}
    )


class WalletSchema(ma.Schema):
    balance = ma.fields.Integer(required=True)
    lots = ma.fields.List(
        ma.fields.Nested(LotSchema),
        required=True,
        metadata={"description": "Lots with credits left, soonest expiring first"},
    )
    next_expiry = ma.fields.DateTime(
        allow_none=True, metadata={"description": "When the soonest credits expire"}
    )
    next_expiry_amount = ma.fields.Integer(
        required=True, metadata={"description": "How many credits expire then"}
    )


class HistoryItemSchema(ma.Schema):
    id = ma.fields.Integer(required=True, metadata={"description": "The transaction's id"})
    kind = ma.fields.String(required=True, metadata={"example": "earn"})
    amount = ma.fields.Integer(
        required=True, metadata={"description": "Credits in (positive) or out (negative)"}
    )
    balance_after = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True)
    description = ma.fields.String(
        required=True, metadata={"example": "for Litter pick, Roundhay Park"}
    )
    summary = ma.fields.String(
        required=True, metadata={"example": "+2 for Litter pick, Roundhay Park, 3 Nov"}
    )


class HistoryPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HistoryItemSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class GiftRequestSchema(RequestSchema):
    to_email = ma.fields.String(
        validate=ma.validate.Length(max=254),
        metadata={"description": "The resident receiving the credits"},
    )
    to_pot_id = Id(
        metadata={"description": "Or a community pot (GET /api/v1/pots) instead of a resident"}
    )
    amount = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=1, max=MAX_INT)
    )
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    message = ma.fields.String(load_default="", validate=ma.validate.Length(max=200))

    @ma.validates_schema
    def one_receiver(self, data, **kwargs):
        if ("to_email" in data) == ("to_pot_id" in data):
            raise ma.ValidationError("Give either to_email or to_pot_id.", "to_email")


class GiftSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)
    balance_after = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True)
    description = ma.fields.String(required=True)
    to = ma.fields.String(required=True, metadata={"description": "Who received the credits"})


class PotSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    balance = ma.fields.Integer(required=True)


class PotRequestSchema(RequestSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=1000))


def history_item(item) -> dict:
    return {
        "id": item.transaction_id,
        "kind": item.kind,
        "amount": item.amount,
        "balance_after": item.balance_after,
        "created_at": item.created_at,
        "description": item.memo,
        "summary": item.sentence,
    }


def parse_cursor(cursor: str | None) -> int | None:
    """Cursors are the opaque ``e<entry id>`` of the last item shown."""
    if cursor is None:
        return None
    if not (cursor.startswith("e") and cursor[1:].isdigit()):
        raise InvalidRequest("That cursor is not one we gave out.", {"cursor": ["Not valid."]})
    return int(cursor[1:])


@wallet_api.route("/wallet")
class WalletResource(MethodView):
    @wallet_api.response(200, WalletSchema)
    @wallet_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def get(self):
        """Your balance and the lots your credits are in, soonest expiring first."""
        wallet = ops.find_wallet(g.api_user.id)
        if wallet is None:
            return {"balance": 0, "lots": [], "next_expiry": None, "next_expiry_amount": 0}
        lots = live_lots(wallet.id)
        soonest, amount = next_expiry(lots)
        return {
            "balance": wallet.balance,
            "lots": lots,
            "next_expiry": soonest,
            "next_expiry_amount": amount,
        }


@wallet_api.route("/wallet/transactions")
class WalletTransactionsResource(MethodView):
    @wallet_api.arguments(PageArgsSchema, location="query")
    @wallet_api.response(200, HistoryPageSchema)
    @wallet_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def get(self, args):
        """Your history, newest first, each movement explained in words (paginated)."""
        before = parse_cursor(args["cursor"])
        wallet = ops.find_wallet(g.api_user.id)
        if wallet is None:
            return {"items": [], "next_cursor": None}
        items, next_cursor = history(wallet.id, limit=args["limit"], before=before)
        return {
            "items": [history_item(item) for item in items],
            "next_cursor": f"e{next_cursor}" if next_cursor else None,
        }


@wallet_api.route("/gifts")
class GiftsResource(MethodView):
    @wallet_api.arguments(GiftRequestSchema)
    @wallet_api.response(201, GiftSchema)
    @wallet_api.alt_response(404, description="recipient_not_found")
    @wallet_api.alt_response(409, description="idempotency_conflict")
    @wallet_api.alt_response(422, description="insufficient_credits, invalid_recipient")
    @wallet_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def post(self, body):
        """Give credits to another resident or a community pot (idempotent by key)."""
        receiver = gift_receiver(body)
        transaction = ops.gift(
            g.api_user.id,
            receiver.id,
            body["amount"],
            idempotency_key=f"gift:{g.api_user.id}:{body['idempotency_key']}",
            description=body["message"].strip(),
            actor_id=g.api_user.id,
        )
        db.session.commit()
        return gift_response(transaction, g.api_user.id)


def gift_receiver(body) -> Account:
    """The wallet or pot a gift goes to."""
    if "to_pot_id" in body:
        pot = db.session.get(Account, body["to_pot_id"])
        if pot is None or pot.kind != AccountKind.POT:
            raise NotFoundError("There is no such community pot.", "recipient_not_found")
        return pot
    email = body["to_email"].strip().lower()
    user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None or not user.is_active or Role.RESIDENT not in user.roles:
        raise NotFoundError("No resident has that email address.", "recipient_not_found")
    return ops.wallet_of(user.id)


def gift_response(transaction, giver_id: int) -> dict:
    """The gift as the giver sees it (the same for a replay of the same request)."""
    given, received = db.session.execute(
        select(Entry.balance_after, Account.name)
        .join(Account, Account.id == Entry.account_id)
        .where(Entry.transaction_id == transaction.id)
        .order_by(Entry.amount)
    ).all()
    return {
        "id": transaction.id,
        "kind": transaction.kind,
        "amount": transaction.amount,
        "balance_after": given[0],
        "created_at": transaction.created_at,
        "description": transaction.description,
        "to": received[1],
    }


@wallet_api.route("/pots")
class PotsResource(MethodView):
    @wallet_api.response(200, PotSchema(many=True))
    @wallet_api.doc(**bearer_doc("any user"))
    @api_auth()
    def get(self):
        """Community pots residents can give credits to."""
        from rewards.wallet import community_pots

        return community_pots()

    @wallet_api.arguments(PotRequestSchema)
    @wallet_api.response(201, PotSchema)
    @wallet_api.alt_response(409, description="pot_exists")
    @wallet_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def post(self, body):
        """Create a community pot (council)."""
        pot = ops.create_community_pot(body["name"], body["description"], actor_id=g.api_user.id)
        db.session.commit()
        return pot


# --------------------------------------------------------------------------- hardship


class ExtensionRequestSchema(RequestSchema):
    days = ma.fields.Integer(
        strict=True,
        validate=ma.validate.Range(min=1, max=3650),
        metadata={"description": "Days more for each lot (from its date, or from now if past)"},
    )
    new_expires_at = ma.fields.AwareDateTime(
        metadata={"description": "Or a new date: lots expiring before it get it"}
    )
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))
    lot_ids = ma.fields.List(
        Id(),
        validate=ma.validate.Length(min=1, max=1000),
        metadata={"description": "Only these of the resident's lots (default: every live lot)"},
    )
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))

    @ma.validates_schema
    def days_or_date(self, data, **kwargs):
        if ("days" in data) == ("new_expires_at" in data):
            raise ma.ValidationError("Give either days or new_expires_at.", "days")


class ExtendedLotSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    remaining = ma.fields.Integer(required=True, metadata={"description": "Credits left in it"})
    previous_expires_at = ma.fields.DateTime(required=True)
    expires_at = ma.fields.DateTime(required=True, metadata={"description": "Its new date"})


class ExtensionSchema(ma.Schema):
    resident_id = ma.fields.Integer(required=True)
    reason = ma.fields.String(required=True)
    days = ma.fields.Integer(allow_none=True, required=True)
    new_expires_at = ma.fields.DateTime(allow_none=True, required=True)
    credits = ma.fields.Integer(required=True, metadata={"description": "Credits given more time"})
    lots = ma.fields.List(ma.fields.Nested(ExtendedLotSchema), required=True)
    extended_at = ma.fields.DateTime(required=True)


@wallet_api.route("/residents/<int:resident_id>/extensions")
class ResidentExtensionsResource(MethodView):
    @wallet_api.arguments(ExtensionRequestSchema)
    @wallet_api.response(201, ExtensionSchema)
    @wallet_api.alt_response(404, description="resident_not_found")
    @wallet_api.alt_response(409, description="nothing_to_extend, idempotency_conflict")
    @wallet_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def post(self, body, resident_id):
        """Hardship: give a resident's credits more time, with a reason (audited).

        The same operation as the council's extend-credits page. The same
        ``idempotency_key`` (per resident) with the same body answers the first extension
        again; with another body it is a 409 ``idempotency_conflict``.
        """
        from rewards.expiry import extend_lots

        resident = db.session.get(User, resident_id)
        if resident is None or Role.RESIDENT not in resident.roles:
            raise NotFoundError("There is no such resident.", "resident_not_found")
        key = body["idempotency_key"]
        request_hash = extension_fingerprint(resident.id, body)
        # Under the wallet's lock (extend_lots takes it too), so two requests with one key
        # never both extend.
        ops.lock_wallets([resident.id])
        earlier = earlier_extension(resident.id, key)
        if earlier is None:
            extend_lots(
                g.api_user,
                resident.id,
                days=body.get("days"),
                until=body.get("new_expires_at"),
                reason=body["reason"],
                lot_ids=body.get("lot_ids"),
                audit_details={"idempotency_key": key, "request_hash": request_hash},
            )
            entry = earlier_extension(resident.id, key)
        elif (earlier.details or {}).get("request_hash") != request_hash:
            raise ConflictError(
                "That idempotency key was used for a different extension.",
                "idempotency_conflict",
            )
        else:
            entry = earlier
        answer = extension_response(resident.id, entry)
        db.session.commit()
        return answer


def extension_fingerprint(resident_id: int, body: dict) -> str:
    until = body.get("new_expires_at")
    request = {
        "resident_id": resident_id,
        "days": body.get("days"),
        "until": until.isoformat() if until else None,
        "reason": body["reason"].strip(),
        "lot_ids": sorted(set(body["lot_ids"])) if body.get("lot_ids") else None,
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def earlier_extension(resident_id: int, key: str) -> AuditEntry | None:
    """The resident's extension made with ``key``, newest first (there are few)."""
    entries = db.session.execute(
        select(AuditEntry)
        .where(
            AuditEntry.action == "credits.extended",
            AuditEntry.subject == f"user:{resident_id}",
        )
        .order_by(AuditEntry.id.desc())
    ).scalars()
    for entry in entries:
        if (entry.details or {}).get("idempotency_key") == key:
            return entry
    return None


def extension_response(resident_id: int, entry: AuditEntry) -> dict:
    """The extension as its audit entry has it (so a replay answers the same)."""
    details = entry.details or {}
    lots = [
        {
            "id": lot["lot_id"],
            "remaining": lot["remaining"],
            "previous_expires_at": datetime.fromisoformat(lot["from"]),
            "expires_at": datetime.fromisoformat(lot["to"]),
        }
        for lot in details.get("lots", [])
    ]
    until = details.get("until")
    return {
        "resident_id": resident_id,
        "reason": entry.reason,
        "days": details.get("days"),
        "new_expires_at": datetime.fromisoformat(until) if until else None,
        "credits": sum(lot["remaining"] for lot in lots),
        "lots": lots,
        "extended_at": entry.created_at,
    }
