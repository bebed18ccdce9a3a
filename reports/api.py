"""``GET /api/v1/reports/summary`` (API.md): the scheme's headline figures for a period."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from core.apiframework import ApiBlueprint, bearer_doc
from core.extensions import db
from core.models import Role
from core.security import api_auth
from reports import queries
from reports.periods import period_from_args

reports_api = ApiBlueprint(
    "reports_api", __name__, url_prefix="/api/v1", description="Council reports"
)


class SummaryQuerySchema(ma.Schema):
    from_ = ma.fields.String(
        data_key="from",
        load_default=None,
        validate=ma.validate.Length(max=10),
        metadata={"description": "First day (YYYY-MM-DD), included; default 11 months ago"},
    )
    to = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=10),
        metadata={"description": "Last day (YYYY-MM-DD), included"},
    )


class SummarySchema(ma.Schema):
    period_from = ma.fields.String(required=True)
    period_to = ma.fields.String(required=True)
    hours = ma.fields.Float(required=True, metadata={"description": "Hours, 2 decimals"})
    minutes = ma.fields.Integer(required=True)
    credits_earned = ma.fields.Integer(required=True)
    credits_spent = ma.fields.Integer(required=True)
    credits_expired = ma.fields.Integer(required=True)
    credits_gifted = ma.fields.Integer(required=True)
    credits_settled = ma.fields.Integer(required=True)
    credits_outstanding = ma.fields.Integer(required=True)
    settlement_rate_pence = ma.fields.Integer(required=True)
    outstanding_liability_pence = ma.fields.Integer(required=True)
    owed_to_partners_pence = ma.fields.Integer(required=True)
    active_residents = ma.fields.Integer(required=True)
    volunteers = ma.fields.Integer(required=True)
    first_time_volunteers = ma.fields.Integer(required=True)
    returning_volunteers = ma.fields.Integer(required=True)
    new_volunteers = ma.fields.Integer(required=True)
    activities_active = ma.fields.Integer(required=True)
    partners_active = ma.fields.Integer(required=True)
    redemptions = ma.fields.Integer(required=True)
    money_to_local_businesses_pence = ma.fields.Integer(
        required=True,
        metadata={"description": "Paid to partners in the period; same as paid_to_partners_pence"},
    )
    paid_to_partners_pence = ma.fields.Integer(
        required=True,
        metadata={
            "description": "Settlements paid in the period (status paid, paid_at in the period)"
        },
    )
    redeemed_value_pence = ma.fields.Integer(
        required=True,
        metadata={
            "description": "The period's standing redemptions at their rates, settled or not"
        },
    )


@reports_api.route("/reports/summary")
class SummaryResource(MethodView):
    @reports_api.arguments(SummaryQuerySchema, location="query")
    @reports_api.response(200, SummarySchema)
    @reports_api.doc(**bearer_doc("council"))
    @api_auth(Role.COUNCIL, Role.ADMIN)
    def get(self, args):
        """Hours, credits earned, spent, expired and outstanding, liability, people."""
        period = period_from_args(args.get("from_"), args.get("to"))
        figures = queries.summary(period).as_dict()
        db.session.commit()  # keep the days the ledger rollup added (reports.queries)
        return figures
