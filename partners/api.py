"""The partners' JSON API of API.md: partners, offers, redemption codes and redemptions.

Views parse, check who is asking, call ``partners.operations`` and commit once.
"""

from __future__ import annotations

import marshmallow as ma
from flask import g
from flask.views import MethodView
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.api import InvitedMemberSchema, InviteRequestSchema
from core.apiframework import (
    ApiBlueprint,
    Id,
    PageArgsSchema,
    RequestSchema,
    bearer_doc,
    paginate,
)
from core.errors import ForbiddenError, NotFoundError
from core.extensions import db, limiter
from core.invitations import Invitation
from core.models import Role
from core.qrcodes import qr_svg
from core.security import api_auth, confirmed_api_user
from partners import operations
from partners.models import (
    LimitPeriod,
    Offer,
    OfferStatus,
    Partner,
    PartnerMembership,
    PartnerStatus,
    Redemption,
    RedemptionStatus,
)

partners_api = ApiBlueprint(
    "partners_api", __name__, url_prefix="/api/v1", description="Partner businesses and offers"
)
redemptions_api = ApiBlueprint(
    "redemptions_api",
    __name__,
    url_prefix="/api/v1",
    description="Spending credits: one-time codes and redemptions at the till",
)

#: A failed code lookup counts against the caller's budget, so codes cannot be guessed.
CODE_GUESS_LIMIT = "30 per 10 minutes"


# --- schemas --------------------------------------------------------------------------------


class PartnerSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    address = ma.fields.String(required=True)
    category = ma.fields.String()
    ward = ma.fields.String()
    opening_hours = ma.fields.String()
    contact_name = ma.fields.String()
    contact_email = ma.fields.String()
    contact_phone = ma.fields.String()
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in PartnerStatus]})
    status_reason = ma.fields.String(allow_none=True)
    settlement_rate_pence = ma.fields.Integer(required=True)
    payout_method = ma.fields.String(required=True)
    created_at = ma.fields.DateTime()


class PartnerListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PartnerSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class PartnerCreateSchema(RequestSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    address = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))
    category = ma.fields.String(load_default="", validate=ma.validate.Length(max=60))
    ward = ma.fields.String(load_default="", validate=ma.validate.Length(max=80))
    opening_hours = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))
    contact_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))
    contact_email = ma.fields.String(load_default="", validate=ma.validate.Length(max=254))
    contact_phone = ma.fields.String(load_default="", validate=ma.validate.Length(max=30))


class ReasonSchema(RequestSchema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))


class EmptySchema(RequestSchema):
    """No fields: an empty body or ``{}``."""


class SettlementRateSchema(RequestSchema):
    settlement_rate_pence = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=0, max=100_000)
    )


class OfferSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    partner_id = ma.fields.Integer(required=True)
    partner_name = ma.fields.Function(lambda offer: offer.partner.name)
    title = ma.fields.String(required=True)
    description = ma.fields.String()
    credit_cost = ma.fields.Integer(required=True)
    status = ma.fields.String(metadata={"enum": [s.value for s in OfferStatus]})
    valid_from = ma.fields.Date(allow_none=True)
    valid_until = ma.fields.Date(allow_none=True)
    days = ma.fields.String(metadata={"description": "Days it can be taken, Monday=0"})
    available_from = ma.fields.Time(allow_none=True)
    available_until = ma.fields.Time(allow_none=True)
    limit_per_resident = ma.fields.Integer(allow_none=True)
    limit_period = ma.fields.String()
    stock_total = ma.fields.Integer(allow_none=True)
    stock_remaining = ma.fields.Integer(allow_none=True)


class OfferListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(OfferSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class OfferCreateSchema(RequestSchema):
    title = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))
    credit_cost = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=1, max=1000)
    )
    valid_from = ma.fields.Date(load_default=None, allow_none=True)
    valid_until = ma.fields.Date(load_default=None, allow_none=True)
    days = ma.fields.String(load_default="0123456", validate=ma.validate.Regexp(r"^[0-6]{1,7}$"))
    available_from = ma.fields.Time(load_default=None, allow_none=True)
    available_until = ma.fields.Time(load_default=None, allow_none=True)
    limit_per_resident = ma.fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=ma.validate.Range(1, 1000)
    )
    limit_period = ma.fields.String(
        load_default=LimitPeriod.WEEK.value,
        validate=ma.validate.OneOf([p.value for p in LimitPeriod]),
    )
    stock_total = ma.fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=ma.validate.Range(0, 1_000_000)
    )


class OfferStatusSchema(RequestSchema):
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf([s.value for s in OfferStatus])
    )


class CodeSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "K7MQ-4XRT"})
    qr_svg = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(required=True)


class CodeLookupSchema(RequestSchema):
    code = ma.fields.String(required=True, validate=ma.validate.Length(max=64))
    partner_id = Id(required=True)


class CodeLookupResultSchema(ma.Schema):
    first_name = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(required=True)
    offers = ma.fields.List(ma.fields.Nested(OfferSchema), required=True)


class RedemptionCreateSchema(RequestSchema):
    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    offer_id = Id(required=True)
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


class RedemptionSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    credits = ma.fields.Integer(required=True)
    partner_id = ma.fields.Integer(required=True)
    offer_id = ma.fields.Integer(required=True)
    status = ma.fields.String(metadata={"enum": [s.value for s in RedemptionStatus]})
    description = ma.fields.String()
    resident_first_name = ma.fields.String(attribute="first_name")
    amount_pence = ma.fields.Integer()
    transaction_id = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    cancelled_at = ma.fields.DateTime(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)


class RedemptionListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RedemptionSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class DirectoryArgsSchema(PageArgsSchema):
    q = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))
    category = ma.fields.String(load_default="", validate=ma.validate.Length(max=60))
    ward = ma.fields.String(load_default="", validate=ma.validate.Length(max=80))
    affordable = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Residents: only offers their balance covers now"},
    )


class PartnerListArgsSchema(PageArgsSchema):
    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([s.value for s in PartnerStatus])
    )


class RedemptionListArgsSchema(PageArgsSchema):
    from_ = ma.fields.DateTime(data_key="from", load_default=None)
    to = ma.fields.DateTime(load_default=None)
    offer_id = Id(load_default=None, strict=False)
    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([s.value for s in RedemptionStatus])
    )


# --- helpers --------------------------------------------------------------------------------


def get_partner(partner_id: int) -> Partner:
    partner = db.session.get(Partner, partner_id)
    if partner is None:
        raise NotFoundError("There is no such partner.")
    return partner


def aware(value):
    """Query datetimes without a zone are taken as UTC."""
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# --- partners -------------------------------------------------------------------------------


@partners_api.route("/partners")
class PartnersResource(MethodView):
    @partners_api.arguments(PartnerListArgsSchema, location="query")
    @partners_api.response(200, PartnerListSchema)
    @partners_api.doc(**bearer_doc("partner staff (theirs)", "council (all, ?status=)"))
    @api_auth()
    def get(self, args):
        """Partners: the ones you work for; council staff see all (filter with ?status=)."""
        user = g.api_user
        if user.has_role(Role.COUNCIL, Role.ADMIN):
            query = select(Partner)
        else:
            query = (
                select(Partner).join(PartnerMembership).where(PartnerMembership.user_id == user.id)
            )
        if args["status"]:
            query = query.where(Partner.status == args["status"])
        return paginate(query, Partner.id, args["limit"], args["cursor"])

    @partners_api.arguments(PartnerCreateSchema)
    @partners_api.response(201, PartnerSchema)
    @partners_api.doc(**bearer_doc("any signed-in user; they become its staff on approval"))
    @api_auth()
    def post(self, body):
        """Register a business: it waits for council approval (``status: pending``)."""
        partner = operations.register_partner(g.api_user, **body)
        db.session.commit()
        return partner


@partners_api.route("/partners/<int:partner_id>")
class PartnerResource(MethodView):
    @partners_api.response(200, PartnerSchema)
    @partners_api.doc(**bearer_doc("partner staff of that partner", "council"))
    @api_auth()
    def get(self, partner_id):
        """One partner (its staff and council staff)."""
        partner = get_partner(partner_id)
        if not operations.can_view_partner_records(g.api_user, partner):
            raise ForbiddenError("You can only see a business you work for.", "not_your_partner")
        return partner


@partners_api.route("/partners/<int:partner_id>/approve")
class PartnerApproveResource(MethodView):
    @partners_api.arguments(EmptySchema)
    @partners_api.response(200, PartnerSchema)
    @partners_api.alt_response(409, description="not_pending")
    @partners_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def post(self, body, partner_id):
        """Approve a pending partner (or reinstate a suspended one); its staff get the role."""
        partner = get_partner(partner_id)
        operations.decide_partner(g.api_user, partner, PartnerStatus.APPROVED)
        db.session.commit()
        return partner


@partners_api.route("/partners/<int:partner_id>/reject")
class PartnerRejectResource(MethodView):
    @partners_api.arguments(ReasonSchema)
    @partners_api.response(200, PartnerSchema)
    @partners_api.alt_response(409, description="not_pending")
    @partners_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def post(self, body, partner_id):
        """Reject a pending partner, with a reason."""
        partner = get_partner(partner_id)
        operations.decide_partner(g.api_user, partner, PartnerStatus.REJECTED, body["reason"])
        db.session.commit()
        return partner


@partners_api.route("/partners/<int:partner_id>/suspend")
class PartnerSuspendResource(MethodView):
    @partners_api.arguments(ReasonSchema)
    @partners_api.response(200, PartnerSchema)
    @partners_api.alt_response(409, description="invalid_state: not approved")
    @partners_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def post(self, body, partner_id):
        """Suspend an approved partner, with a reason: its offers can no longer be taken."""
        partner = get_partner(partner_id)
        operations.decide_partner(g.api_user, partner, PartnerStatus.SUSPENDED, body["reason"])
        db.session.commit()
        return partner


@partners_api.route("/partners/<int:partner_id>/settlement-rate")
class PartnerRateResource(MethodView):
    @partners_api.arguments(SettlementRateSchema)
    @partners_api.response(200, PartnerSchema)
    @partners_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def put(self, body, partner_id):
        """Change what the scheme pays this partner per credit, in pence (audited)."""
        partner = get_partner(partner_id)
        operations.set_settlement_rate(g.api_user, partner, body["settlement_rate_pence"])
        db.session.commit()
        return partner


# --- offers ---------------------------------------------------------------------------------


class StaffMemberSchema(InvitedMemberSchema):
    partner_id = ma.fields.Integer(required=True)


@partners_api.route("/partners/<int:partner_id>/staff")
class PartnerStaffResource(MethodView):
    @partners_api.arguments(InviteRequestSchema)
    @partners_api.response(201, StaffMemberSchema)
    @partners_api.alt_response(
        202, schema=StaffMemberSchema, description="no account yet: invitation emailed"
    )
    @partners_api.alt_response(409, description="already_staff")
    @partners_api.doc(**bearer_doc("partner staff of that partner"))
    @api_auth(Role.PARTNER_STAFF)
    def post(self, body, partner_id):
        """Add a colleague by email; without an account they are emailed an invitation."""
        partner = get_partner(partner_id)
        added = operations.invite_staff(g.api_user, partner, body["email"])
        db.session.commit()
        if isinstance(added, Invitation):
            return {
                "partner_id": partner.id,
                "user_id": None,
                "status": "invited",
                "invitation_id": added.id,
            }, 202
        return {"partner_id": partner.id, "user_id": added.user_id, "status": "added"}


@partners_api.route("/partners/<int:partner_id>/offers")
class OffersResource(MethodView):
    @partners_api.arguments(PageArgsSchema, location="query")
    @partners_api.response(200, OfferListSchema)
    @partners_api.doc(**bearer_doc("anyone signed in (staff see paused offers too)"))
    @api_auth()
    def get(self, args, partner_id):
        """A partner's offers: active ones of an approved partner, or all for its staff."""
        partner = get_partner(partner_id)
        query = select(Offer).where(Offer.partner_id == partner.id)
        if not operations.can_view_partner_records(g.api_user, partner):
            if not partner.is_approved:
                raise NotFoundError("There is no such partner.")
            query = query.where(Offer.status == OfferStatus.ACTIVE.value)
        return paginate(query, Offer.id, args["limit"], args["cursor"])

    @partners_api.arguments(OfferCreateSchema)
    @partners_api.response(201, OfferSchema)
    @partners_api.doc(**bearer_doc("partner staff of that partner"))
    @api_auth(Role.PARTNER_STAFF)
    def post(self, body, partner_id):
        """Add an offer."""
        partner = get_partner(partner_id)
        offer = operations.create_offer(g.api_user, partner, operations.OfferFields(**body))
        db.session.commit()
        return offer


@partners_api.route("/offers")
class DirectoryResource(MethodView):
    @partners_api.arguments(DirectoryArgsSchema, location="query")
    @partners_api.response(200, OfferListSchema)
    @partners_api.doc(**bearer_doc("anyone signed in"))
    @api_auth()
    def get(self, args):
        """The offer directory: active offers of approved partners, newest first.

        Filter by ``category`` and ``ward`` of the partner and by text (``q``); a resident
        may ask for ``affordable=true``: what they can get with the credits they have now.
        """
        max_cost = None
        if args["affordable"] and g.api_user.has_role(Role.RESIDENT):
            max_cost = operations.ledger().wallet_of(g.api_user.id).balance
        query = operations.directory_query(
            category=args["category"], ward=args["ward"], text=args["q"], max_cost=max_cost
        )
        return paginate(query, Offer.id, args["limit"], args["cursor"])


@partners_api.route("/offers/<int:offer_id>")
class OfferResource(MethodView):
    @partners_api.arguments(OfferStatusSchema)
    @partners_api.response(200, OfferSchema)
    @partners_api.doc(**bearer_doc("partner staff of its partner"))
    @api_auth(Role.PARTNER_STAFF)
    def patch(self, body, offer_id):
        """Pause an offer or make it active again: ``{"status": "paused" | "active"}``."""
        offer = db.session.get(Offer, offer_id)
        if offer is None:
            raise NotFoundError("There is no such offer.")
        operations.set_offer_status(g.api_user, offer, OfferStatus(body["status"]))
        db.session.commit()
        return offer


# --- redemption codes and redemptions -------------------------------------------------------


def failed_code_lookup(response) -> bool:
    """Only refused codes count against the guessing limit."""
    return bool(g.get("code_refused"))


def api_user_key() -> str:
    """Rate-limit key: the bearer token's digest (one till), else the address."""
    from flask import request

    from core.security import token_digest

    header = request.headers.get("Authorization", "")
    return "till:" + token_digest(header) if header else "till-ip:" + (request.remote_addr or "")


def flag_refused_codes(function):
    """Mark the request when a code was refused, for the rate limit's ``deduct_when``."""
    from functools import wraps

    @wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except operations.RedemptionError as error:
            if error.code in operations.CODE_REFUSALS:
                g.code_refused = True
            raise

    return wrapped


@redemptions_api.route("/wallet/redemption-codes")
class RedemptionCodesResource(MethodView):
    @redemptions_api.arguments(EmptySchema)
    @redemptions_api.response(201, CodeSchema)
    @redemptions_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def post(self, body):
        """A one-time code to show at the till, as a QR and as a short code to type.

        It works once, for a few minutes (``expires_at``), and names nobody.
        """
        code, row = operations.issue_code(g.api_user)
        db.session.commit()
        return {
            "code": code,
            "qr_svg": qr_svg(code, title=f"Your code {code}"),
            "expires_at": row.expires_at,
        }


@redemptions_api.route("/redemption-codes/lookup")
class CodeLookupResource(MethodView):
    @redemptions_api.arguments(CodeLookupSchema)
    @redemptions_api.response(200, CodeLookupResultSchema)
    @redemptions_api.alt_response(409, description="code_used")
    @redemptions_api.alt_response(422, description="code_invalid, code_expired")
    @redemptions_api.doc(**bearer_doc("partner staff of that partner"))
    @limiter.limit(CODE_GUESS_LIMIT, key_func=api_user_key, deduct_when=failed_code_lookup)
    @api_auth(Role.PARTNER_STAFF)
    @flag_refused_codes
    def post(self, body):
        """Read a code at the till: the resident's first name and the offers they can have now.

        Nothing is spent; the code stays valid until a redemption is made with it.
        """
        partner = get_partner(body["partner_id"])
        check = operations.check_code_at(g.api_user, partner, body["code"])
        return {
            "first_name": check.first_name,
            "expires_at": check.code.expires_at,
            "offers": check.offers,
        }


@redemptions_api.route("/redemptions")
class RedemptionsResource(MethodView):
    @redemptions_api.arguments(RedemptionCreateSchema)
    @redemptions_api.response(201, RedemptionSchema)
    @redemptions_api.alt_response(404, description="offer_unavailable (no such offer)")
    @redemptions_api.alt_response(409, description="code_used, idempotency_conflict")
    @redemptions_api.alt_response(
        422, description="code_invalid, code_expired, insufficient_credits, offer_unavailable"
    )
    @redemptions_api.doc(**bearer_doc("partner staff of the offer's partner"))
    @limiter.limit(CODE_GUESS_LIMIT, key_func=api_user_key, deduct_when=failed_code_lookup)
    @api_auth(Role.PARTNER_STAFF, checked_in_statement=True)
    @flag_refused_codes
    def post(self, body):
        """Spend a resident's credits on an offer with their one-time code.

        The same ``idempotency_key`` and body again returns the first answer and spends
        nothing more.
        """
        # The usual case in one round trip, the bearer token checked in the same statement.
        done = operations.redeem_at_once(g.api_user, **body, token_digest=g.get("api_unconfirmed"))
        if done is not None:
            return done
        staff = confirmed_api_user(Role.PARTNER_STAFF)
        try:
            redemption, _created = operations.redeem(staff, **body)
            db.session.commit()
        except IntegrityError:
            # The same key raced in from another till at the same instant: answer as it was.
            db.session.rollback()
            redemption = operations.answer_again(staff, **body)
        return redemption


@redemptions_api.route("/redemptions/<int:redemption_id>")
class RedemptionResource(MethodView):
    @redemptions_api.response(200, RedemptionSchema)
    @redemptions_api.doc(**bearer_doc("partner staff of its partner", "council"))
    @api_auth()
    def get(self, redemption_id):
        """One redemption (the receipt)."""
        return visible_redemption(redemption_id)


def visible_redemption(redemption_id: int) -> Redemption:
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None:
        raise NotFoundError("There is no such redemption.")
    if not operations.can_view_partner_records(g.api_user, redemption.partner):
        raise ForbiddenError("This redemption was made at another business.", "not_your_partner")
    return redemption


@redemptions_api.route("/redemptions/<int:redemption_id>/cancel")
class RedemptionCancelResource(MethodView):
    @redemptions_api.arguments(ReasonSchema)
    @redemptions_api.response(200, RedemptionSchema)
    @redemptions_api.alt_response(409, description="already_cancelled, cancel_window_passed")
    @redemptions_api.doc(
        **bearer_doc("partner staff of its partner (within the cancel window)", "council")
    )
    @api_auth(Role.PARTNER_STAFF, Role.COUNCIL, Role.ADMIN)
    def post(self, body, redemption_id):
        """Give the credits back with a reason (a reversing transaction; audited)."""
        redemption = visible_redemption(redemption_id)
        operations.cancel_redemption(g.api_user, redemption, body["reason"])
        db.session.commit()
        return redemption


@partners_api.route("/partners/<int:partner_id>/redemptions")
class PartnerRedemptionsResource(MethodView):
    @partners_api.arguments(RedemptionListArgsSchema, location="query")
    @partners_api.response(200, RedemptionListSchema)
    @partners_api.doc(**bearer_doc("partner staff of that partner", "council"))
    @api_auth(Role.PARTNER_STAFF, Role.COUNCIL, Role.ADMIN)
    def get(self, args, partner_id):
        """A partner's redemptions, newest first (filters: from, to, offer_id, status)."""
        partner = get_partner(partner_id)
        if not operations.can_view_partner_records(g.api_user, partner):
            raise ForbiddenError("You can only see a business you work for.", "not_your_partner")
        query = operations.redemptions_query(
            partner.id,
            since=aware(args["from_"]),
            until=aware(args["to"]),
            offer_id=args["offer_id"],
            status=args["status"],
        )
        return paginate(query, Redemption.id, args["limit"], args["cursor"])
