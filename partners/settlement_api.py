"""The settlements part of the JSON API: ``GET /api/v1/partners/{id}/settlements``."""

from __future__ import annotations

import marshmallow as ma
from flask import g
from flask.views import MethodView
from sqlalchemy import select

from core.apiframework import ApiBlueprint, PageArgsSchema, bearer_doc, paginate
from core.errors import ForbiddenError
from core.models import Role
from core.security import api_auth
from partners import operations
from partners.api import get_partner
from partners.settlement import Settlement, SettlementStatus

settlements_api = ApiBlueprint(
    "settlements_api",
    __name__,
    url_prefix="/api/v1",
    description="What the scheme owes partners, and its payment",
)


class SettlementSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    partner_id = ma.fields.Integer(required=True)
    period_start = ma.fields.DateTime(required=True)
    period_end = ma.fields.DateTime(required=True)
    credits = ma.fields.Integer(required=True)
    redemption_count = ma.fields.Integer(required=True)
    amount_pence = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in SettlementStatus]})
    hold_reason = ma.fields.String(
        allow_none=True, metadata={"description": "Why a pending one waits: budget"}
    )
    payout_method = ma.fields.String(allow_none=True)
    stripe_transfer_id = ma.fields.String(allow_none=True)
    payment_batch_id = ma.fields.Integer(allow_none=True)
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    submitted_at = ma.fields.DateTime(allow_none=True)
    paid_at = ma.fields.DateTime(allow_none=True)
    failed_at = ma.fields.DateTime(allow_none=True)


class SettlementListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SettlementSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class SettlementListArgsSchema(PageArgsSchema):
    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([s.value for s in SettlementStatus])
    )


@settlements_api.route("/partners/<int:partner_id>/settlements")
class PartnerSettlementsResource(MethodView):
    @settlements_api.arguments(SettlementListArgsSchema, location="query")
    @settlements_api.response(200, SettlementListSchema)
    @settlements_api.doc(**bearer_doc("partner staff of that partner", "council"))
    @api_auth(Role.PARTNER_STAFF, Role.COUNCIL, Role.ADMIN)
    def get(self, args, partner_id):
        """A partner's settlements, newest first (``?status=`` to filter)."""
        partner = get_partner(partner_id)
        if not operations.can_view_partner_records(g.api_user, partner):
            raise ForbiddenError("You can only see a business you work for.", "not_your_partner")
        query = select(Settlement).where(Settlement.partner_id == partner.id)
        if args["status"]:
            query = query.where(Settlement.status == args["status"])
        return paginate(query, Settlement.id, args["limit"], args["cursor"])
