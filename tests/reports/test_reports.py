"""The reports agree with a history built through the real operations, figure by figure."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from core.extensions import db
from core.models import Role
from reports import queries
from reports.queries import Period
from tests.conftest import sign_in
from tests.reports.history import build_known_history

PERIOD = Period.from_dates(date(2026, 1, 1), date(2026, 10, 31))

EXPECTED_SUMMARY = {
    "period_from": "2026-01-01",
    "period_to": "2026-10-31",
    # Robin 120 (Feb) + Sam 90 + Kit 60 (Mar) + Sam 60 (Sep); Kit's rejected hour is not.
    "hours": Decimal("5.50"),
    "minutes": 330,
    "credits_earned": 2 + 3 + 2 + 1,
    # The café's 2; the cancelled book's 3 came back the same day.
    "credits_spent": 2,
    # Robin's November lot in February (2), Sam's 2 and Kit's 3 in July.
    "credits_expired": 7,
    "credits_gifted": 1,
    "credits_settled": 0,
    # Sam's September credit is all residents hold at the end of October.
    "credits_outstanding": 1,
    "settlement_rate_pence": 100,
    "outstanding_liability_pence": 100,
    # The café holds Robin's 2 credits at 100p; the bookshop gave its 3 back.
    "owed_to_partners_pence": 200,
    "active_residents": 3,
    "volunteers": 3,
    # Sam and Kit had never volunteered; Robin had, in November.
    "first_time_volunteers": 2,
    "returning_volunteers": 1,
    # Only Sam also joined the scheme in the period.
    "new_volunteers": 1,
    "activities_active": 2,
    "partners_active": 1,
    "redemptions": 1,
    # Settlements paid in the period: the book's 240p (paid 12 January). Not the coffee paid
    # in December, the one paid in January and reversed in February, nor the pending one.
    "money_to_local_businesses_pence": 240,
    "paid_to_partners_pence": 240,
    # The café's 2 credits at 100p, redeemed in April (not settled yet).
    "redeemed_value_pence": 200,
}


@pytest.fixture
def known(app, create_user):
    return build_known_history(app, create_user)


def test_summary_agrees_with_the_known_history(app, known):
    with app.app_context():
        assert queries.summary(PERIOD).as_dict() == EXPECTED_SUMMARY
        db.session.remove()


def test_breakdowns_by_month_category_ward_and_partner(app, known):
    with app.app_context():
        months = {row["month"]: row for row in queries.by_month(PERIOD)}
        categories = {row["category"]: row for row in queries.by_category(PERIOD)}
        wards = {row["ward"]: row for row in queries.by_ward(PERIOD)}
        partners = queries.by_partner(PERIOD)
        db.session.remove()
    assert list(months) == [f"2026-{m:02d}" for m in range(1, 11)]
    assert months["2026-02"] | {} == {
        "month": "2026-02",
        "hours": Decimal("2.00"),
        "volunteers": 1,
        "credits_earned": 2,
        "credits_spent": 0,
        "credits_expired": 2,
        "money_to_local_businesses_pence": 0,
    }
    assert months["2026-01"]["money_to_local_businesses_pence"] == 240
    assert months["2026-03"]["hours"] == Decimal("2.50")
    assert months["2026-03"]["volunteers"] == 2
    assert months["2026-03"]["credits_earned"] == 5
    assert months["2026-04"]["credits_spent"] == 2
    # Money paid is dated by the payment, not the redemption.
    assert months["2026-04"]["money_to_local_businesses_pence"] == 0
    assert sum(row["money_to_local_businesses_pence"] for row in months.values()) == 240
    assert months["2026-07"]["credits_expired"] == 5
    assert months["2026-09"]["credits_earned"] == 1
    assert sum(row["credits_earned"] for row in months.values()) == 8
    assert sum(row["credits_expired"] for row in months.values()) == 7
    assert categories["Environment"] == {
        "category": "Environment",
        "hours": Decimal("3.00"),
        "credits_earned": 3,
        "volunteers": 2,
        "activities_active": 1,
    }
    assert categories["Food and lunch clubs"]["hours"] == Decimal("2.50")
    assert categories["Food and lunch clubs"]["credits_earned"] == 5
    assert categories["Gardening"]["hours"] == Decimal("0.00")
    assert wards["Roundhay"] == {
        "ward": "Roundhay",
        "hours": Decimal("3.00"),
        "credits_earned": 3,
        "volunteers": 2,
        "activities_active": 1,
        "credits_spent": 2,
        "money_to_local_businesses_pence": 0,
        "partners_active": 1,
    }
    assert wards["Chapel Allerton"]["credits_spent"] == 0
    assert wards["Chapel Allerton"]["volunteers"] == 2
    # The bookshop was paid in the period for a book redeemed before it.
    assert wards["Chapel Allerton"]["money_to_local_businesses_pence"] == 240
    assert wards["Chapel Allerton"]["partners_active"] == 0
    assert [
        (
            p["partner"],
            p["redemptions"],
            p["credits_spent"],
            p["redeemed_value_pence"],
            p["money_to_local_businesses_pence"],
        )
        for p in partners
    ] == [("Book Nook", 0, 0, 0, 240), ("Corner Café", 1, 2, 200, 0)]


def test_paid_to_partners_counts_only_settlements_paid_in_the_period(app, known):
    from datetime import UTC, datetime

    from partners.queries import paid_by_partner, paid_in_period
    from partners.settlement import Settlement

    def moment(*day):
        return datetime(*day, tzinfo=UTC)

    with app.app_context():
        statuses = {
            name: db.session.get(Settlement, settlement_id).status
            for name, settlement_id in known["settlements"].items()
        }
        assert statuses == {"paid": "paid", "failed": "failed", "pending": "pending"}
        assert paid_in_period(PERIOD.start, PERIOD.end) == 240
        # December 2025: the first coffee's 200p only.
        assert paid_in_period(moment(2025, 12, 1), moment(2026, 1, 1)) == 200
        # The paid_at day is inside [start, end); the end is not.
        assert paid_in_period(moment(2026, 1, 12), moment(2026, 1, 13)) == 240
        assert paid_in_period(moment(2026, 1, 1), moment(2026, 1, 12)) == 0
        # Paid on 20 January and reversed: not paid.
        assert paid_in_period(moment(2026, 1, 13), moment(2026, 3, 1)) == 0
        assert paid_by_partner(moment(2025, 1, 1), moment(2027, 1, 1)) == {
            known["books"][0]: 240,
            known["cafe"][0]: 200,
        }
        db.session.remove()


def test_the_ledger_still_verifies_and_agrees_with_the_report(app, known):
    from rewards.verify import verify_ledger

    with app.app_context():
        report = verify_ledger()
        everything = queries.summary(Period.from_dates(date(2025, 1, 1), date(2026, 11, 1)))
        db.session.remove()
    assert not report.breaks, report.breaks
    # Over all time: earned = spent + expired + outstanding (gifts move credits between residents).
    # Robin's, Sam's and Kit's 10, and Ari's 9 (all spent before the period).
    assert everything.credits_earned == 19
    assert everything.credits_spent == 11
    # Ari's four redemptions were settled (credits leave the partners' accounts then).
    assert everything.credits_settled == 9
    # Paid over all time: the book (240p) and the first coffee (200p).
    assert everything.paid_to_partners_pence == 440
    assert (
        everything.credits_spent + everything.credits_expired + everything.credits_outstanding
        == everything.credits_earned
    )


def test_api_summary_matches_and_checks_its_dates(app, api, create_user, known):
    council = known["history"].council
    token = api.token(council)
    response = api.get("/api/v1/reports/summary?from=2026-01-01&to=2026-10-31", token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in EXPECTED_SUMMARY.items()}
    assert body == expected
    bad = api.get("/api/v1/reports/summary?from=2026-13-01", token)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "invalid_request"
    backwards = api.get("/api/v1/reports/summary?from=2026-05-01&to=2026-01-01", token)
    assert backwards.status_code == 400
    resident = api.token(create_user(Role.RESIDENT))
    assert api.get("/api/v1/reports/summary", resident).status_code == 403


def test_dashboard_shows_charts_tables_and_csv_of_every_table(client, known):
    sign_in(client, known["history"].council)
    page = client.get("/council/reports?from=2026-01-01&to=2026-10-31")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count('role="img"') == 4
    assert html.count("<table") == 5
    assert 'data-measure="hours">5.50<' in html
    assert 'data-measure="money_to_local_businesses_pence">£2.40<' in html
    assert "£2.00" in html
    for table in ("summary", "months", "categories", "wards", "partners"):
        assert f"/council/reports/{table}.csv?from=2026-01-01&amp;to=2026-10-31" in html
        download = client.get(f"/council/reports/{table}.csv?from=2026-01-01&to=2026-10-31")
        assert download.status_code == 200
        assert download.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
        assert len(rows) > 1
    summary = dict(
        csv.reader(
            io.StringIO(
                client.get("/council/reports/summary.csv?from=2026-01-01&to=2026-10-31").get_data(
                    as_text=True
                )
            )
        )
    )
    assert summary["hours"] == "5.50"
    assert summary["money_to_local_businesses_pence"] == "240"
    assert summary["redeemed_value_pence"] == "200"
    partners_csv = client.get("/council/reports/partners.csv?from=2026-01-01&to=2026-10-31")
    assert partners_csv.get_data(as_text=True).splitlines() == [
        "Partner,Ward,Redemptions,Credits spent,Owed for the period's redemptions (pence),"
        "Paid in the period (pence)",
        "Book Nook,Chapel Allerton,0,0,0,240",
        "Corner Café,Roundhay,1,2,200,0",
    ]
    assert client.get("/council/reports/nothing.csv").status_code == 404
    assert client.get("/council/reports?from=yesterday").status_code == 400


def test_organisers_and_partners_see_their_own_reports_only(app, client, create_user, known):
    history = known["history"]
    sign_in(client, history.organiser)
    organisation_id = known["organisation_id"]
    page = client.get(f"/reports/organisations/{organisation_id}?from=2026-01-01&to=2026-10-31")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-measure="hours">5.50<' in html
    assert 'data-measure="volunteers">3<' in html
    assert "Lunch club" in html and "Litter pick" in html
    activities = client.get(
        f"/reports/organisations/{organisation_id}/activities.csv?from=2026-01-01&to=2026-10-31"
    ).get_data(as_text=True)
    assert "Litter pick,3.00,2,3" in activities
    assert client.get(f"/reports/partners/{known['cafe'][0]}").status_code == 403
    other = create_user(Role.ORGANISER)
    other_client = app.test_client()
    sign_in(other_client, other)
    assert other_client.get(f"/reports/organisations/{organisation_id}").status_code == 403

    staff_client = app.test_client()
    sign_in(staff_client, known["cafe"][2])
    mine = staff_client.get(f"/reports/partners/{known['cafe'][0]}?from=2026-01-01&to=2026-10-31")
    assert mine.status_code == 200
    assert 'data-measure="amount_pence">£2.00<' in mine.get_data(as_text=True)
    assert staff_client.get(f"/reports/partners/{known['books'][0]}").status_code == 403
    assert "Corner Café" in staff_client.get("/reports").get_data(as_text=True)


def test_closed_days_come_from_the_rollup_and_today_from_the_ledger(app, create_user):
    from datetime import timedelta

    from core.timeutil import utcnow
    from reports.models import LedgerDay, RollupState
    from rewards import operations as ledger

    resident = create_user(Role.RESIDENT)
    today = utcnow().date()
    with app.app_context():
        ledger.earn(resident.id, 3, idempotency_key="today", description="Litter pick")
        db.session.commit()
        period = Period.from_dates(today - timedelta(days=400), today)
        assert queries.summary(period).credits_earned == 3
        state = db.session.get(RollupState, "ledger_days")
        assert state.complete_before == today - timedelta(days=1)
        db.session.commit()
        db.session.remove()
    # Today is read live: more credits today show at once; the rollup is not redone.
    with app.app_context():
        ledger.earn(resident.id, 2, idempotency_key="today-2", description="Litter pick")
        db.session.commit()
        assert queries.ledger_totals(period)["earn"] == 5
        assert db.session.execute(db.select(db.func.count()).select_from(LedgerDay)).scalar() == 0
        db.session.remove()
