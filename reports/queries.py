"""The figures of the council's reports, read from the ledger and the volunteering records.

Every figure is one set-based query (no query per row); each is defined once here and used
by the dashboard, the CSV downloads and ``GET /api/v1/reports/summary``. A period is
``[start, end)`` in UTC.

Definitions (what a council officer would be asked, and how it is counted):

- **hours**: minutes of *approved* claims of sessions held in the period, / 60.
- **credits earned / spent / expired / settled / gifted**: the ledger's transactions of that
  kind made in the period, less the reversals of such transactions made in the period (a
  cancelled redemption gives credits back, so it is not spending).
- **credits outstanding**: credits held by residents and community pots at the end of the
  period (current balances less what moved after the end): what could still be spent.
- **outstanding liability**: outstanding credits x the default settlement rate (pence): what
  they would cost the council if all were spent; **owed to partners** is credits partners
  hold and have not been settled for, at each partner's own rate.
- **hours** and everything about volunteering are dated by the session's scheduled start.
- **volunteers**: residents with an approved claim in the period; **first-time volunteers**
  had attended no session before the period (residents who had not volunteered before);
  **returning volunteers** had; **new volunteers** are first-time volunteers who also joined
  the scheme in the period.
- **active residents**: residents who volunteered or spent credits at a partner in the period.
- **activities active**: activities with an approved claim in the period; **partners
  active**: partners with a standing redemption in the period.
- **money paid to local businesses** (``money_to_local_businesses_pence``, also
  ``paid_to_partners_pence``): what the scheme actually paid partners in the period, the
  "money kept in the local economy": settlements with status paid whose ``paid_at`` is in the
  period (``partners.queries``). By month it is dated by ``paid_at``; by ward, by the
  partner's ward. A settlement pending, sent, failed or cancelled is not paid.
- **redeemed value** (``redeemed_value_pence``): what the period's standing redemptions are
  worth to partners (credits x the rate each was taken at), settled yet or not.

The dashboard reads each source once (``dashboard``): on PostgreSQL the period's claims and
redemptions in one statement (reports.onepass), the ledger by month (the summary adds the
months up), settlements paid by partner and month; the summary and every table are made
from those.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from flask import current_app
from sqlalchemy import (
    Date,
    String,
    case,
    cast,
    distinct,
    func,
    insert,
    literal,
    select,
    text,
    union,
)
from sqlalchemy.orm import aliased

from core.extensions import db
from core.models import Role, RoleMembership, User
from core.settings import get_setting
from core.timeutil import utcnow
from partners.models import Partner, Redemption, RedemptionStatus
from partners.queries import paid_in_period, paid_settlements
from reports.models import LedgerDay, RollupState
from reports.onepass import OnePass, one_pass
from rewards.models import Account, AccountKind, Entry, Transaction, TransactionKind
from volunteering.models import (
    Activity,
    Attendance,
    Claim,
    ClaimStatus,
    Organisation,
    OrganisationMember,
    VolunteeringSession,
)

APPROVED = ClaimStatus.APPROVED.value
COMPLETED = RedemptionStatus.COMPLETED.value
HOLDING_KINDS = (AccountKind.RESIDENT.value, AccountKind.POT.value)
LEDGER_DAYS = "ledger_days"


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC, from dates (``end`` is the day after the last day)."""

    start: datetime
    end: datetime

    @classmethod
    def from_dates(cls, first: date, last: date) -> Period:
        """The days ``first`` to ``last`` inclusive."""
        return cls(
            datetime.combine(first, time.min, tzinfo=UTC),
            datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
        )

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()


def tune_for_reports() -> None:
    """On PostgreSQL, for this transaction: no JIT (compiling costs more than these
    queries run) and room to count distinct residents in memory instead of on disk."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL jit = off"))
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))


def hours_from_minutes(minutes: int) -> Decimal:
    """Hours to two decimal places, rounded half up."""
    return (Decimal(int(minutes or 0)) / 60).quantize(Decimal("0.01"), ROUND_HALF_UP)


def month_of(column):
    """``YYYY-MM`` of a timestamp column, in UTC, on PostgreSQL and SQLite."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


# --- the pieces -------------------------------------------------------------------------


def approved_claims(period: Period):
    """Approved claims of sessions held in the period, with the activity and the time.

    The session's scheduled start dates the hours (an attendance lies inside its session's
    window): claims join sessions only, through reports' covering index on
    ``claims.session_id``, never the million-row attendances table.
    """
    return (
        select(
            Claim.resident_id,
            Claim.minutes,
            Claim.credits,
            VolunteeringSession.starts_at.label("checked_in_at"),
            VolunteeringSession.activity_id,
        )
        .join(VolunteeringSession, Claim.session_id == VolunteeringSession.id)
        .where(
            Claim.status == APPROVED,
            VolunteeringSession.starts_at >= period.start,
            VolunteeringSession.starts_at < period.end,
        )
    )


def ledger_movements(key, condition) -> list[tuple]:
    """(key, kind, net amount) of the transactions matching ``condition``, grouped by key.

    A reversal counts, negatively, as the kind it reversed. Two statements, so the
    reversals (few) are joined to their originals by primary key while the rest is one
    index-only scan, instead of joining every transaction to the whole table.
    """
    original = aliased(Transaction)
    grouping = key(Transaction.created_at)  # one expression, so GROUP BY matches SELECT
    plain = db.session.execute(
        select(grouping, Transaction.kind, func.sum(Transaction.amount))
        .where(condition, Transaction.kind != TransactionKind.REVERSE.value)
        .group_by(grouping, Transaction.kind)
    ).all()
    reversals = db.session.execute(
        select(grouping, original.kind, -func.sum(Transaction.amount))
        .join(original, Transaction.reverses_id == original.id)
        .where(condition, Transaction.kind == TransactionKind.REVERSE.value)
        .group_by(grouping, original.kind)
    ).all()
    return [tuple(row) for row in plain] + [tuple(row) for row in reversals]


def day_of(column):
    """The UTC date of a timestamp column, on PostgreSQL and SQLite."""
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def ensure_ledger_days() -> date:
    """Roll up every closed day not rolled up yet; returns the first day not in the rollup.

    Runs in the caller's transaction (a report's views commit it; elsewhere it is simply
    done again). The state row is locked, so two reports never roll up the same days.
    """
    target = utcnow().date() - timedelta(days=1)
    state = db.session.get(RollupState, LEDGER_DAYS, with_for_update=True)
    done = state.complete_before if state is not None else None
    if done is not None and done >= target:
        return done
    condition = Transaction.created_at < midnight(target)
    if done is not None:
        condition = condition & (Transaction.created_at >= midnight(done))
    totals: dict[tuple, int] = {}
    for row_day, row_kind, total in ledger_movements(day_of, condition):
        key = (row_day if isinstance(row_day, date) else date.fromisoformat(row_day), row_kind)
        totals[key] = totals.get(key, 0) + int(total or 0)
    rows = [{"day": day, "kind": kind, "amount": amount} for (day, kind), amount in totals.items()]
    if rows:
        db.session.execute(insert(LedgerDay), rows)
    if state is None:
        db.session.add(RollupState(name=LEDGER_DAYS, complete_before=target))
    else:
        state.complete_before = target
    db.session.flush()
    return target


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def ledger_by(period: Period, group) -> dict[tuple, int]:
    """Net credits moved in the period by (group, kind): the rollup, then the live ledger.

    ``group`` maps a date/timestamp column to the grouping value (None: by kind only).
    """
    boundary = ensure_ledger_days()
    totals: dict[tuple, int] = {}
    rolled_end = min(period.end.date(), boundary)
    if period.start.date() < rolled_end:
        key = group(LedgerDay.day, rolled=True) if group else literal("")
        for value, kind, total in db.session.execute(
            select(key, LedgerDay.kind, func.sum(LedgerDay.amount))
            .where(LedgerDay.day >= period.start.date(), LedgerDay.day < rolled_end)
            .group_by(key, LedgerDay.kind)
        ).all():
            totals[(value, kind)] = totals.get((value, kind), 0) + int(total or 0)
    live_start = max(period.start, midnight(boundary))
    if live_start < period.end:
        key = (lambda column: group(column, rolled=False)) if group else (lambda c: literal(""))
        condition = (Transaction.created_at >= live_start) & (Transaction.created_at < period.end)
        for value, row_kind, total in ledger_movements(key, condition):
            totals[(value, row_kind)] = totals.get((value, row_kind), 0) + int(total or 0)
    return totals


def ledger_totals(period: Period) -> dict[str, int]:
    """Credits moved in the period by kind, net of reversals made in the period."""
    by_kind: dict[str, int] = {}
    for (_value, kind), total in ledger_by(period, None).items():
        by_kind[kind] = by_kind.get(kind, 0) + total
    return {
        kind.value: by_kind.get(kind.value, 0)
        for kind in TransactionKind
        if kind != TransactionKind.REVERSE
    }


def ledger_month(column, *, rolled: bool):
    """``YYYY-MM`` of a rollup day or a transaction's time."""
    if rolled:
        if db.session.get_bind().dialect.name == "postgresql":
            return func.to_char(column, "YYYY-MM")
        return func.strftime("%Y-%m", column)
    return month_of(column)


def outstanding_at(moment: datetime) -> int:
    """Credits residents and pots held at ``moment``: balances now less later movements."""
    holding = select(Account.id).where(Account.kind.in_(HOLDING_KINDS))
    now_total = db.session.execute(
        select(func.coalesce(func.sum(Account.balance), 0)).where(Account.kind.in_(HOLDING_KINDS))
    ).scalar_one()
    later = db.session.execute(
        select(func.coalesce(func.sum(Entry.amount), 0))
        .join(Transaction, Entry.transaction_id == Transaction.id)
        .where(Transaction.created_at >= moment, Entry.account_id.in_(holding))
    ).scalar_one()
    return int(now_total) - int(later)


def owed_to_partners_pence() -> int:
    """Credits partners hold now (not yet settled) at each partner's rate, in pence."""
    key = literal("partner:") + cast(Partner.id, String)
    total = db.session.execute(
        select(func.coalesce(func.sum(Account.balance * Partner.settlement_rate_pence), 0))
        .select_from(Account)
        .join(Partner, Account.key == key)
        .where(Account.kind == AccountKind.PARTNER.value)
    ).scalar_one()
    return int(total)


def volunteering_figures(period: Period) -> dict[str, int]:
    """Minutes, volunteers (first-time, returning, new), activities and active residents.

    One statement: the period's approved claims are read once, through sessions and the
    claims' covering index, and folded per resident; each volunteer then costs one index
    probe for an attendance before the period.
    """
    per_resident = (
        approved_claims(period)
        .with_only_columns(Claim.resident_id, func.sum(Claim.minutes).label("minutes"))
        .group_by(Claim.resident_id)
        .cte("per_resident")
    )
    earlier = (
        select(Attendance.id)
        .where(
            Attendance.resident_id == per_resident.c.resident_id,
            Attendance.checked_in_at < period.start,
        )
        .exists()
    )
    joined = (User.created_at >= period.start) & (User.created_at < period.end)
    flagged = (
        select(
            per_resident.c.minutes,
            case((earlier, 0), else_=1).label("first"),
            case((joined, 1), else_=0).label("joined"),
        )
        .select_from(per_resident)
        .join(User, User.id == per_resident.c.resident_id)
        .subquery()
    )
    people = select(
        func.coalesce(func.sum(flagged.c.minutes), 0).label("minutes"),
        func.count().label("volunteers"),
        func.coalesce(func.sum(flagged.c.first), 0).label("first"),
        func.coalesce(func.sum(flagged.c.first * flagged.c.joined), 0).label("new"),
    ).subquery()
    spenders = standing_redemptions(period).with_only_columns(Redemption.resident_id)
    active = select(func.count()).select_from(
        union(select(per_resident.c.resident_id), spenders).subquery()
    )
    activities = select(func.count(distinct(VolunteeringSession.activity_id))).where(
        VolunteeringSession.starts_at >= period.start,
        VolunteeringSession.starts_at < period.end,
        select(Claim.id)
        .where(Claim.session_id == VolunteeringSession.id, Claim.status == APPROVED)
        .exists(),
    )
    row = db.session.execute(
        select(
            people.c.minutes,
            people.c.volunteers,
            people.c.first,
            people.c.new,
            active.scalar_subquery(),
            activities.scalar_subquery(),
        )
    ).one()
    minutes, volunteers, first, new, active_count, activity_count = (int(v or 0) for v in row)
    return {
        "minutes": minutes,
        "volunteers": volunteers,
        "first_time_volunteers": first,
        "returning_volunteers": volunteers - first,
        "new_volunteers": new,
        "active_residents": active_count,
        "activities_active": activity_count,
    }


def volunteer_counts(period: Period) -> dict[str, int]:
    """Volunteers in the period, first-time, returning and new to the scheme."""
    figures = volunteering_figures(period)
    keys = ("volunteers", "first_time_volunteers", "returning_volunteers", "new_volunteers")
    return {key: figures[key] for key in keys}


def standing_redemptions(period: Period):
    return select(Redemption).where(
        Redemption.status == COMPLETED,
        Redemption.created_at >= period.start,
        Redemption.created_at < period.end,
    )


def active_residents(period: Period) -> int:
    """Residents who volunteered or spent credits at a partner in the period."""
    volunteered = approved_claims(period).with_only_columns(Claim.resident_id)
    spent = standing_redemptions(period).with_only_columns(Redemption.resident_id)
    both = union(volunteered, spent).subquery()
    return int(db.session.execute(select(func.count()).select_from(both)).scalar_one())


# --- what the summary and the tables are made from ------------------------------------


def on_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def spending_rows(period: Period) -> list[tuple[int, str, int, int, int]]:
    """(partner id, ``YYYY-MM``, redemptions, credits, pence) of standing redemptions."""
    redemptions = standing_redemptions(period).subquery()
    month = month_of(redemptions.c.created_at)
    rows = db.session.execute(
        select(
            redemptions.c.partner_id,
            month,
            func.count(),
            func.sum(redemptions.c.credits),
            func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence),
        ).group_by(redemptions.c.partner_id, month)
    ).all()
    return [(int(p), m, int(n), int(c or 0), int(pence or 0)) for p, m, n, c, pence in rows]


def volunteering_by_month(period: Period) -> dict[str, tuple[int, int]]:
    """``YYYY-MM`` -> (minutes, volunteers) of approved claims."""
    claims = approved_claims(period).subquery()
    month = month_of(claims.c.checked_in_at)
    return {
        row[0]: (int(row[1]), int(row[2]))
        for row in db.session.execute(
            select(
                month,
                func.coalesce(func.sum(claims.c.minutes), 0),
                func.count(distinct(claims.c.resident_id)),
            ).group_by(month)
        ).all()
    }


def volunteering_by(period: Period, field: str) -> dict[str, tuple[int, int, int, int]]:
    """An activity column's value -> (minutes, credits, volunteers, activities)."""
    claims = approved_claims(period).subquery()
    column = getattr(Activity, field)
    return {
        row[0]: tuple(int(v) for v in row[1:])
        for row in db.session.execute(
            select(
                column,
                func.coalesce(func.sum(claims.c.minutes), 0),
                func.coalesce(func.sum(claims.c.credits), 0),
                func.count(distinct(claims.c.resident_id)),
                func.count(distinct(claims.c.activity_id)),
            )
            .select_from(claims)
            .join(Activity, Activity.id == claims.c.activity_id)
            .group_by(column)
        ).all()
    }


def read_period(
    period: Period, *, breakdowns: bool = True, volunteering_only: bool = False
) -> OnePass:
    """The period's volunteering and spending figures, read once for the summary and tables.

    On PostgreSQL one statement (reports.onepass; ``volunteering_only`` leaves out what the
    month and category tables do not show); elsewhere (SQLite) one query per piece.
    """
    if on_postgres():
        return one_pass(
            period,
            months_in(period),
            breakdowns=breakdowns,
            volunteering_only=volunteering_only,
            alongside=alongside,
        )
    figures = volunteering_figures(period)
    found = OnePass(figures, {}, {}, {}, spending_rows(period))
    if breakdowns:
        found.months = volunteering_by_month(period)
        found.categories = volunteering_by(period, "category")
        found.wards = volunteering_by(period, "ward")
    return found


T = TypeVar("T")
#: Threads that read a period's figures on a connection of their own (PostgreSQL).
_ALONGSIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports")


def alongside(function: Callable[..., T], *args, **kwargs) -> Callable[[], T]:
    """Start ``function(*args, **kwargs)`` and return a function that waits for its answer.

    On PostgreSQL it runs in another thread, on a connection of its own, so the caller's
    other queries run meanwhile on the server's other core; each statement reads its own
    snapshot anyway, so nothing changes about consistency. Elsewhere (SQLite) it simply
    runs now.
    """
    if not on_postgres():
        found = function(*args, **kwargs)
        return lambda: found
    app = current_app._get_current_object()

    def work() -> T:
        with app.app_context():
            try:
                tune_for_reports()
                return function(*args, **kwargs)
            finally:
                db.session.rollback()
                db.session.remove()

    return _ALONGSIDE.submit(work).result


def read_period_alongside(period: Period, **options) -> Callable[[], OnePass]:
    """``read_period`` started ``alongside``: the caller reads the ledger meanwhile."""
    return alongside(read_period, period, **options)


def ledger_by_month(period: Period) -> dict[str, dict[str, int]]:
    """``YYYY-MM`` -> kind -> net credits moved (the rollup, then the live ledger)."""
    ledger: dict[str, dict[str, int]] = {}
    for (row_month, row_kind), total in ledger_by(period, ledger_month).items():
        ledger.setdefault(row_month, {})[row_kind] = total
    return ledger


def paid_rows(period: Period) -> list[tuple[int, str, int]]:
    """(partner id, ``YYYY-MM``, pence) of settlements paid in the period (by ``paid_at``)."""
    paid = paid_settlements(period.start, period.end).subquery()
    month = month_of(paid.c.paid_at)
    rows = db.session.execute(
        select(paid.c.partner_id, month, func.sum(paid.c.amount_pence)).group_by(
            paid.c.partner_id, month
        )
    ).all()
    return [(int(partner), name, int(pence or 0)) for partner, name, pence in rows]


def partners_by_name(ids) -> list[tuple[int, str, str]]:
    """(id, name, ward) of the partners ``ids``, in the order of their names."""
    if not ids:
        return []
    return [
        tuple(row)
        for row in db.session.execute(
            select(Partner.id, Partner.name, Partner.ward)
            .where(Partner.id.in_(sorted(ids)))
            .order_by(Partner.name)
        ).all()
    ]


# --- the summary ------------------------------------------------------------------------


@dataclass
class Summary:
    """The scheme at a glance for one period (API.md ``/reports/summary``)."""

    period_from: str
    period_to: str
    hours: Decimal
    minutes: int
    credits_earned: int
    credits_spent: int
    credits_expired: int
    credits_gifted: int
    credits_settled: int
    credits_outstanding: int
    settlement_rate_pence: int
    outstanding_liability_pence: int
    owed_to_partners_pence: int
    active_residents: int
    volunteers: int
    first_time_volunteers: int
    returning_volunteers: int
    new_volunteers: int
    activities_active: int
    partners_active: int
    redemptions: int
    #: Paid to partners by settlements paid in the period (the same as
    #: ``paid_to_partners_pence``; the name the dashboard and API had first).
    money_to_local_businesses_pence: int
    #: Settlements paid in the period (status paid, ``paid_at`` in the period), in pence.
    paid_to_partners_pence: int
    #: What the period's standing redemptions are worth to partners (credits x the rate
    #: each was taken at), settled yet or not.
    redeemed_value_pence: int

    def as_dict(self) -> dict:
        return asdict(self)


def summary_of(period: Period, found: OnePass, ledger_months: dict[str, dict[str, int]]):
    """The summary from figures already read (``read_period``, ``ledger_by_month``)."""
    ledger: dict[str, int] = {}
    for moved in ledger_months.values():
        for kind, total in moved.items():
            ledger[kind] = ledger.get(kind, 0) + total
    outstanding = outstanding_at(period.end)
    rate = int(get_setting("PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE"))
    paid = paid_in_period(period.start, period.end)
    people = found.people
    return Summary(
        period_from=period.first_day.isoformat(),
        period_to=period.last_day.isoformat(),
        hours=hours_from_minutes(people["minutes"]),
        minutes=people["minutes"],
        credits_earned=ledger.get(TransactionKind.EARN.value, 0),
        credits_spent=ledger.get(TransactionKind.SPEND.value, 0),
        credits_expired=ledger.get(TransactionKind.EXPIRE.value, 0),
        credits_gifted=ledger.get(TransactionKind.GIFT.value, 0),
        credits_settled=ledger.get(TransactionKind.SETTLE.value, 0),
        credits_outstanding=outstanding,
        settlement_rate_pence=rate,
        outstanding_liability_pence=outstanding * rate,
        owed_to_partners_pence=owed_to_partners_pence(),
        active_residents=people["active_residents"],
        volunteers=people["volunteers"],
        first_time_volunteers=people["first_time_volunteers"],
        returning_volunteers=people["volunteers"] - people["first_time_volunteers"],
        new_volunteers=people["new_volunteers"],
        activities_active=people["activities_active"],
        partners_active=len({row[0] for row in found.spending if row[2]}),
        redemptions=sum(row[2] for row in found.spending),
        money_to_local_businesses_pence=paid,
        paid_to_partners_pence=paid,
        redeemed_value_pence=sum(row[4] for row in found.spending),
    )


def summary(period: Period) -> Summary:
    """Every headline figure for ``period``."""
    tune_for_reports()
    found = read_period_alongside(period, breakdowns=False)
    ledger_months = ledger_by_month(period)
    return summary_of(period, found(), ledger_months)


# --- breakdowns -------------------------------------------------------------------------


def months_in(period: Period) -> list[str]:
    """``YYYY-MM`` of every month the period touches, in order."""
    months, day = [], period.first_day.replace(day=1)
    while day <= period.last_day:
        months.append(f"{day:%Y-%m}")
        day = (day + timedelta(days=32)).replace(day=1)
    return months


def months_table(period: Period, found: OnePass, ledger_months, paid) -> list[dict]:
    money: dict[str, int] = {}
    for _partner, name, pence in paid:
        money[name] = money.get(name, 0) + pence
    rows = []
    for name in months_in(period):
        minutes, volunteers = found.months.get(name, (0, 0))
        moved = ledger_months.get(name, {})
        rows.append(
            {
                "month": name,
                "hours": hours_from_minutes(minutes),
                "volunteers": int(volunteers),
                "credits_earned": moved.get(TransactionKind.EARN.value, 0),
                "credits_spent": moved.get(TransactionKind.SPEND.value, 0),
                "credits_expired": moved.get(TransactionKind.EXPIRE.value, 0),
                "money_to_local_businesses_pence": money.get(name, 0),
            }
        )
    return rows


def by_month(period: Period) -> list[dict]:
    """Hours, volunteers, credits earned, spent and expired, and money paid to partners
    (settlements paid that month) by month."""
    tune_for_reports()
    reading = read_period_alongside(period, volunteering_only=True)
    ledger_months, paid = ledger_by_month(period), paid_rows(period)
    return months_table(period, reading(), ledger_months, paid)


def activity_table(field: str, found: dict) -> list[dict]:
    """Hours, credits, volunteers and activities by an activity column (category, ward)."""
    setting = "VOLUNTEERING_CATEGORIES" if field == "category" else "VOLUNTEERING_WARDS"
    listed = list(get_setting(setting))
    names = listed + sorted(name for name in found if name not in listed)
    rows = []
    for name in names:
        minutes, credits, volunteers, activities = found.get(name, (0, 0, 0, 0))
        rows.append(
            {
                field: name,
                "hours": hours_from_minutes(minutes),
                "credits_earned": int(credits),
                "volunteers": int(volunteers),
                "activities_active": int(activities),
            }
        )
    return rows


def by_category(period: Period) -> list[dict]:
    tune_for_reports()
    return activity_table("category", read_period(period, volunteering_only=True).categories)


def wards_table(found: OnePass, paid, partners: list[tuple[int, str, str]]) -> list[dict]:
    """By ward: volunteering where the activity is, spending and payments where the partner is."""
    rows = activity_table("ward", found.wards)
    ward_of = {partner_id: ward for partner_id, _name, ward in partners}
    spending: dict[str, list] = {}
    for partner_id, _month, _count, credits, _pence in found.spending:
        entry = spending.setdefault(ward_of[partner_id], [0, 0, set()])
        entry[0] += credits
        entry[2].add(partner_id)
    for partner_id, _month, pence in paid:
        entry = spending.setdefault(ward_of[partner_id], [0, 0, set()])
        entry[1] += pence
    known = {row["ward"] for row in rows}
    for ward in sorted(name for name in spending if name not in known):
        rows.append(
            {"ward": ward, "hours": Decimal("0.00"), "credits_earned": 0}
            | {"volunteers": 0, "activities_active": 0}
        )
    for row in rows:
        credits, pence, partner_ids = spending.get(row["ward"], (0, 0, ()))
        row["credits_spent"] = int(credits)
        row["money_to_local_businesses_pence"] = int(pence)
        row["partners_active"] = len(partner_ids)
        row["ward"] = row["ward"] or "Not given"
    return rows


def involved_partners(found: OnePass, paid) -> list[tuple[int, str, str]]:
    """Partners with redemptions or payments in the period, by name."""
    return partners_by_name({row[0] for row in found.spending} | {row[0] for row in paid})


def by_ward(period: Period) -> list[dict]:
    tune_for_reports()
    reading = read_period_alongside(period)
    paid = paid_rows(period)
    found = reading()
    return wards_table(found, paid, involved_partners(found, paid))


def partners_table(found: OnePass, paid, partners: list[tuple[int, str, str]]) -> list[dict]:
    """Each partner's redemptions, what they are worth and what was paid in the period."""
    spent: dict[int, list[int]] = {}
    for partner_id, _month, count, credits, pence in found.spending:
        entry = spent.setdefault(partner_id, [0, 0, 0])
        entry[0] += count
        entry[1] += credits
        entry[2] += pence
    money: dict[int, int] = {}
    for partner_id, _month, pence in paid:
        money[partner_id] = money.get(partner_id, 0) + pence
    rows = []
    for partner_id, name, ward in partners:
        count, credits, pence = spent.get(partner_id, (0, 0, 0))
        rows.append(
            {
                "partner": name,
                "ward": ward,
                "redemptions": count,
                "credits_spent": credits,
                "redeemed_value_pence": pence,
                "money_to_local_businesses_pence": money.get(partner_id, 0),
                "partner_id": partner_id,
            }
        )
    return rows


def by_partner(period: Period) -> list[dict]:
    """Each partner's redemptions, what they are worth, and what it was paid, for the period."""
    found = OnePass({}, {}, {}, {}, spending_rows(period))
    paid = paid_rows(period)
    return partners_table(found, paid, involved_partners(found, paid))


def dashboard(period: Period) -> dict:
    """The summary and every table of the council's dashboard, reading each source once."""
    tune_for_reports()
    reading = read_period_alongside(period)
    ledger_months = ledger_by_month(period)
    paid = paid_rows(period)
    found = reading()
    partners = involved_partners(found, paid)
    return {
        "summary": summary_of(period, found, ledger_months),
        "months": months_table(period, found, ledger_months, paid),
        "categories": activity_table("category", found.categories),
        "wards": wards_table(found, paid, partners),
        "partners": partners_table(found, paid, partners),
    }


# --- organisation and partner reports ---------------------------------------------------


def organisation_report(organisation_id: int, period: Period) -> dict:
    """One organisation's hours and volunteers, by month and by activity."""
    claims = (
        approved_claims(period)
        .join(Activity, Activity.id == VolunteeringSession.activity_id)
        .where(Activity.organisation_id == organisation_id)
        .add_columns(Activity.title.label("title"))
        .subquery()
    )
    minutes, volunteers, credits = db.session.execute(
        select(
            func.coalesce(func.sum(claims.c.minutes), 0),
            func.count(distinct(claims.c.resident_id)),
            func.coalesce(func.sum(claims.c.credits), 0),
        )
    ).one()
    month = month_of(claims.c.checked_in_at)
    monthly = {
        row[0]: row[1:]
        for row in db.session.execute(
            select(
                month,
                func.coalesce(func.sum(claims.c.minutes), 0),
                func.count(distinct(claims.c.resident_id)),
            ).group_by(month)
        ).all()
    }
    activities = db.session.execute(
        select(
            claims.c.title,
            func.coalesce(func.sum(claims.c.minutes), 0),
            func.count(distinct(claims.c.resident_id)),
            func.coalesce(func.sum(claims.c.credits), 0),
        )
        .group_by(claims.c.title)
        .order_by(claims.c.title)
    ).all()
    return {
        "hours": hours_from_minutes(minutes),
        "volunteers": int(volunteers),
        "credits_earned": int(credits),
        "months": [
            {
                "month": name,
                "hours": hours_from_minutes(monthly.get(name, (0, 0))[0]),
                "volunteers": int(monthly.get(name, (0, 0))[1]),
            }
            for name in months_in(period)
        ],
        "activities": [
            {
                "activity": title,
                "hours": hours_from_minutes(m),
                "volunteers": int(v),
                "credits_earned": int(c),
            }
            for title, m, v, c in activities
        ],
    }


def partner_report(partner_id: int, period: Period) -> dict:
    """One partner's redemptions and what it is owed, by month and by offer."""
    from partners.models import Offer

    redemptions = standing_redemptions(period).where(Redemption.partner_id == partner_id)
    redemptions = redemptions.subquery()
    count, credits, pence = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(redemptions.c.credits), 0),
            func.coalesce(func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0),
        )
    ).one()
    month = month_of(redemptions.c.created_at)
    monthly = {
        row[0]: row[1:]
        for row in db.session.execute(
            select(
                month,
                func.count(),
                func.coalesce(func.sum(redemptions.c.credits), 0),
                func.coalesce(
                    func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0
                ),
            ).group_by(month)
        ).all()
    }
    offers = db.session.execute(
        select(
            Offer.title,
            func.count(),
            func.coalesce(func.sum(redemptions.c.credits), 0),
            func.coalesce(func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0),
        )
        .select_from(redemptions)
        .join(Offer, Offer.id == redemptions.c.offer_id)
        .group_by(Offer.title)
        .order_by(Offer.title)
    ).all()
    return {
        "redemptions": int(count),
        "credits_spent": int(credits),
        "amount_pence": int(pence),
        "months": [
            {
                "month": name,
                "redemptions": int(monthly.get(name, (0, 0, 0))[0]),
                "credits_spent": int(monthly.get(name, (0, 0, 0))[1]),
                "amount_pence": int(monthly.get(name, (0, 0, 0))[2]),
            }
            for name in months_in(period)
        ],
        "offers": [
            {"offer": t, "redemptions": int(n), "credits_spent": int(c), "amount_pence": int(p)}
            for t, n, c, p in offers
        ],
    }


def organisations_of(user_id: int) -> list[Organisation]:
    return list(
        db.session.execute(
            select(Organisation)
            .join(OrganisationMember, OrganisationMember.organisation_id == Organisation.id)
            .where(OrganisationMember.user_id == user_id)
            .order_by(Organisation.name)
        )
        .scalars()
        .all()
    )


# --- one person (user administration) ---------------------------------------------------


@dataclass
class PersonActivity:
    attendances: int
    hours: Decimal
    pending_claims: int
    balance: int
    redemptions: int
    last_attended: datetime | None
    organisations: list[str]
    partners: list[str]


def person_activity(user_id: int) -> PersonActivity:
    """What one person has done in the scheme, for the user administration page."""
    from partners.models import PartnerMembership

    attendances, last = db.session.execute(
        select(func.count(), func.max(Attendance.checked_in_at)).where(
            Attendance.resident_id == user_id
        )
    ).one()
    minutes = db.session.execute(
        select(func.coalesce(func.sum(Claim.minutes), 0)).where(
            Claim.resident_id == user_id, Claim.status == APPROVED
        )
    ).scalar_one()
    pending = db.session.execute(
        select(func.count()).where(
            Claim.resident_id == user_id, Claim.status == ClaimStatus.PENDING.value
        )
    ).scalar_one()
    balance = db.session.execute(
        select(func.coalesce(func.sum(Account.balance), 0)).where(Account.user_id == user_id)
    ).scalar_one()
    redemptions = db.session.execute(
        select(func.count()).where(Redemption.resident_id == user_id)
    ).scalar_one()
    partners = db.session.execute(
        select(Partner.name)
        .join(PartnerMembership, PartnerMembership.partner_id == Partner.id)
        .where(PartnerMembership.user_id == user_id)
        .order_by(Partner.name)
    ).scalars()
    return PersonActivity(
        attendances=int(attendances),
        hours=hours_from_minutes(minutes),
        pending_claims=int(pending),
        balance=int(balance),
        redemptions=int(redemptions),
        last_attended=last,
        organisations=[o.name for o in organisations_of(user_id)],
        partners=list(partners),
    )


def resident_count() -> int:
    return db.session.execute(
        select(func.count()).where(RoleMembership.role == Role.RESIDENT.value)
    ).scalar_one()
