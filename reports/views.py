"""Report pages: the council's dashboard, each organisation's and partner's own report, and
CSV downloads of every table."""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user

from core.errors import InvalidRequest
from core.extensions import db
from core.models import Role
from core.security import roles_required
from reports import models as _indexes  # noqa: F401 - the report indexes
from reports import queries, tables
from reports.periods import default_period, period_from_args

reports_bp = Blueprint(
    "reports",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/reports",
)

COUNCIL = (Role.COUNCIL, Role.ADMIN)


@reports_bp.app_template_global()
def report_value(value, kind: str = "number") -> str:
    """A report figure as people read it (1,234 / 12.50 / £3.20)."""
    return tables.show(value, kind)


def requested_period():
    """The period of ``?from=&to=``, and the problem with it if it is not right."""
    try:
        return period_from_args(request.args.get("from"), request.args.get("to")), None
    except InvalidRequest as error:
        return default_period(), error.message


def council_tables(period) -> dict[str, list[dict]]:
    """Every table of the council dashboard for ``period``, each source read once."""
    found = queries.dashboard(period)
    summary = found["summary"].as_dict()
    return {
        "rate": summary["settlement_rate_pence"],
        "summary": tables.summary_rows(summary),
        "months": found["months"],
        "categories": found["categories"],
        "wards": found["wards"],
        "partners": found["partners"],
    }


def council_table(period, table: str) -> list[dict]:
    """One table of the council dashboard: only what that table needs is read."""
    if table == "summary":
        return tables.summary_rows(queries.summary(period).as_dict())
    return {
        "months": queries.by_month,
        "categories": queries.by_category,
        "wards": queries.by_ward,
        "partners": queries.by_partner,
    }[table](period)


@reports_bp.get("/council/reports")
@roles_required(*COUNCIL)
def dashboard():
    """The scheme at a glance: figures, charts with their data tables, CSV downloads."""
    period, problem = requested_period()
    data = council_tables(period)
    db.session.commit()  # keep the days the ledger rollup added (reports.queries)
    return render_template(
        "reports/dashboard.html",
        period=period,
        problem=problem,
        data=data,
        tables=tables,
        query={"from": period.first_day.isoformat(), "to": period.last_day.isoformat()},
    ), (400 if problem else 200)


@reports_bp.get("/council/reports/<table>.csv")
@roles_required(*COUNCIL)
def dashboard_csv(table: str):
    """One table of the dashboard as CSV."""
    if table not in tables.TABLES:
        abort(404)
    period, problem = requested_period()
    if problem:
        abort(400)
    rows = council_table(period, table)
    db.session.commit()  # keep the days the ledger rollup added
    return csv_response(tables.TABLES[table], rows, f"{table}-{period.first_day}-{period.last_day}")


def csv_response(table, rows, name: str) -> Response:
    return Response(
        tables.to_csv(table, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@reports_bp.get("/reports")
@roles_required(Role.ORGANISER, Role.PARTNER_STAFF, *COUNCIL)
def mine():
    """The reports a person may see: their organisations' and partners'."""
    from partners.operations import partners_of

    return render_template(
        "reports/mine.html",
        organisations=queries.organisations_of(current_user.id),
        partners=partners_of(current_user),
    )


ORGANISATION_TABLES = {
    "months": tables.Table(
        "months",
        "Hours by month",
        (
            tables.Column("month", "Month", "text"),
            tables.Column("hours", "Hours given", "hours"),
            tables.Column("volunteers", "Volunteers"),
        ),
        chart="hours",
    ),
    "activities": tables.Table(
        "activities",
        "By activity",
        (
            tables.Column("activity", "Activity", "text"),
            tables.Column("hours", "Hours given", "hours"),
            tables.Column("volunteers", "Volunteers"),
            tables.Column("credits_earned", "Credits earned"),
        ),
        chart="hours",
    ),
}

PARTNER_TABLES = {
    "months": tables.Table(
        "months",
        "Redemptions by month",
        (
            tables.Column("month", "Month", "text"),
            tables.Column("redemptions", "Redemptions"),
            tables.Column("credits_spent", "Credits"),
            tables.Column("amount_pence", "Owed by the scheme", "pence"),
        ),
        chart="credits_spent",
    ),
    "offers": tables.Table(
        "offers",
        "By offer",
        (
            tables.Column("offer", "Offer", "text"),
            tables.Column("redemptions", "Redemptions"),
            tables.Column("credits_spent", "Credits"),
            tables.Column("amount_pence", "Owed by the scheme", "pence"),
        ),
        chart="credits_spent",
    ),
}


def visible_organisation(organisation_id: int):
    from volunteering.models import Organisation
    from volunteering.operations import is_organiser_of

    organisation = db.get_or_404(Organisation, organisation_id)
    if not current_user.has_role(*COUNCIL) and not is_organiser_of(current_user, organisation.id):
        abort(403)
    return organisation


def visible_partner(partner_id: int):
    from partners.models import Partner
    from partners.operations import is_staff_of

    partner = db.get_or_404(Partner, partner_id)
    if not current_user.has_role(*COUNCIL) and not is_staff_of(current_user, partner.id):
        abort(403)
    return partner


def render_own_report(template: str, name: str, subject, report_of, report_tables: dict):
    """The report page of one organisation or partner for the requested period."""
    period, problem = requested_period()
    return render_template(
        template,
        **{name: subject},
        period=period,
        problem=problem,
        report=report_of(subject.id, period),
        report_tables=report_tables,
        tables=tables,
        query={"from": period.first_day.isoformat(), "to": period.last_day.isoformat()},
    ), (400 if problem else 200)


def own_report_csv(name: str, subject, report_of, report_tables: dict, table: str):
    """One table of an organisation's or partner's report as CSV."""
    period, problem = requested_period()
    if problem:
        abort(400)
    rows = report_of(subject.id, period)[table]
    return csv_response(report_tables[table], rows, f"{name}-{subject.id}-{table}")


@reports_bp.get("/reports/organisations/<int:organisation_id>")
@roles_required(Role.ORGANISER, *COUNCIL)
def organisation(organisation_id: int):
    """An organisation's hours and volunteers (its organisers and council staff)."""
    return render_own_report(
        "reports/organisation.html",
        "organisation",
        visible_organisation(organisation_id),
        queries.organisation_report,
        ORGANISATION_TABLES,
    )


@reports_bp.get("/reports/organisations/<int:organisation_id>/<table>.csv")
@roles_required(Role.ORGANISER, *COUNCIL)
def organisation_csv(organisation_id: int, table: str):
    """One table of an organisation's report as CSV."""
    if table not in ORGANISATION_TABLES:
        abort(404)
    organisation = visible_organisation(organisation_id)
    return own_report_csv(
        "organisation", organisation, queries.organisation_report, ORGANISATION_TABLES, table
    )


@reports_bp.get("/reports/partners/<int:partner_id>")
@roles_required(Role.PARTNER_STAFF, *COUNCIL)
def partner(partner_id: int):
    """A partner's redemptions and what the scheme owes it (its staff and council staff)."""
    return render_own_report(
        "reports/partner.html",
        "partner",
        visible_partner(partner_id),
        queries.partner_report,
        PARTNER_TABLES,
    )


@reports_bp.get("/reports/partners/<int:partner_id>/<table>.csv")
@roles_required(Role.PARTNER_STAFF, *COUNCIL)
def partner_csv(partner_id: int, table: str):
    """One table of a partner's report as CSV."""
    if table not in PARTNER_TABLES:
        abort(404)
    partner = visible_partner(partner_id)
    return own_report_csv("partner", partner, queries.partner_report, PARTNER_TABLES, table)
