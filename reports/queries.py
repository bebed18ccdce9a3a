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
- **money to local businesses**: what the scheme owes partners for credits redeemed in the
  period (credits x the rate at the time), the "money kept in the local economy".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import String, case, cast, distinct, func, literal, select, union
from sqlalchemy.orm import aliased

from core.extensions import db
from core.models import Role, RoleMembership, User
from core.settings import get_setting
from partners.models import Partner, Redemption, RedemptionStatus
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


def ledger_totals(period: Period) -> dict[str, int]:
    """Credits moved in the period by kind, net of reversals made in the period."""
    totals = dict(
        db.session.execute(
            select(Transaction.kind, func.coalesce(func.sum(Transaction.amount), 0))
            .where(Transaction.created_at >= period.start, Transaction.created_at < period.end)
            .where(Transaction.kind != TransactionKind.REVERSE.value)
            .group_by(Transaction.kind)
        ).all()
    )
    original = aliased(Transaction)
    reversed_totals = dict(
        db.session.execute(
            select(original.kind, func.coalesce(func.sum(Transaction.amount), 0))
            .join(original, Transaction.reverses_id == original.id)
            .where(
                Transaction.kind == TransactionKind.REVERSE.value,
                Transaction.created_at >= period.start,
                Transaction.created_at < period.end,
            )
            .group_by(original.kind)
        ).all()
    )
    return {
        kind.value: int(totals.get(kind.value, 0)) - int(reversed_totals.get(kind.value, 0))
        for kind in TransactionKind
        if kind != TransactionKind.REVERSE
    }


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


def volunteer_counts(period: Period) -> dict[str, int]:
    """Volunteers in the period, first-time, returning and new to the scheme.

    One statement: the period's volunteers once, then for each an index probe for an
    attendance before the period (reports' index on attendances (resident, time)).
    """
    volunteers = (
        approved_claims(period).with_only_columns(Claim.resident_id).distinct().cte("volunteers")
    )
    earlier = (
        select(Attendance.id)
        .where(
            Attendance.resident_id == volunteers.c.resident_id,
            Attendance.checked_in_at < period.start,
        )
        .exists()
    )
    first_time = ~earlier
    joined = User.created_at >= period.start
    total, first, new = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((first_time, 1), else_=0)), 0),
            func.coalesce(func.sum(case((first_time & joined, 1), else_=0)), 0),
        )
        .select_from(volunteers)
        .join(User, User.id == volunteers.c.resident_id)
    ).one()
    return {
        "volunteers": int(total),
        "first_time_volunteers": int(first),
        "returning_volunteers": int(total) - int(first),
        "new_volunteers": int(new),
    }


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
    money_to_local_businesses_pence: int

    def as_dict(self) -> dict:
        return asdict(self)


def summary(period: Period) -> Summary:
    """Every headline figure for ``period``."""
    claims = approved_claims(period).subquery()
    minutes, activities = db.session.execute(
        select(
            func.coalesce(func.sum(claims.c.minutes), 0),
            func.count(distinct(claims.c.activity_id)),
        )
    ).one()
    ledger = ledger_totals(period)
    outstanding = outstanding_at(period.end)
    rate = int(get_setting("PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE"))
    redemptions = standing_redemptions(period).subquery()
    redemption_count, partners, pence = db.session.execute(
        select(
            func.count(),
            func.count(distinct(redemptions.c.partner_id)),
            func.coalesce(func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0),
        )
    ).one()
    return Summary(
        period_from=period.first_day.isoformat(),
        period_to=period.last_day.isoformat(),
        hours=hours_from_minutes(minutes),
        minutes=int(minutes),
        credits_earned=ledger[TransactionKind.EARN.value],
        credits_spent=ledger[TransactionKind.SPEND.value],
        credits_expired=ledger[TransactionKind.EXPIRE.value],
        credits_gifted=ledger[TransactionKind.GIFT.value],
        credits_settled=ledger[TransactionKind.SETTLE.value],
        credits_outstanding=outstanding,
        settlement_rate_pence=rate,
        outstanding_liability_pence=outstanding * rate,
        owed_to_partners_pence=owed_to_partners_pence(),
        active_residents=active_residents(period),
        activities_active=int(activities),
        partners_active=int(partners),
        redemptions=int(redemption_count),
        money_to_local_businesses_pence=int(pence),
        **volunteer_counts(period),
    )


# --- breakdowns -------------------------------------------------------------------------


def months_in(period: Period) -> list[str]:
    """``YYYY-MM`` of every month the period touches, in order."""
    months, day = [], period.first_day.replace(day=1)
    while day <= period.last_day:
        months.append(f"{day:%Y-%m}")
        day = (day + timedelta(days=32)).replace(day=1)
    return months


def by_month(period: Period) -> list[dict]:
    """Hours, volunteers, credits earned, spent and expired, and money to partners by month."""
    claims = approved_claims(period).subquery()
    month = month_of(claims.c.checked_in_at)
    volunteering = {
        row[0]: row[1:]
        for row in db.session.execute(
            select(
                month,
                func.coalesce(func.sum(claims.c.minutes), 0),
                func.count(distinct(claims.c.resident_id)),
            ).group_by(month)
        ).all()
    }
    tx_month = month_of(Transaction.created_at)
    original = aliased(Transaction)
    kind = func.coalesce(original.kind, Transaction.kind)
    sign = case((Transaction.reverses_id.is_(None), 1), else_=-1)
    ledger: dict[str, dict[str, int]] = {}
    for row_month, row_kind, total in db.session.execute(
        select(tx_month, kind, func.sum(Transaction.amount * sign))
        .outerjoin(original, Transaction.reverses_id == original.id)
        .where(Transaction.created_at >= period.start, Transaction.created_at < period.end)
        .group_by(tx_month, kind)
    ).all():
        ledger.setdefault(row_month, {})[row_kind] = int(total or 0)
    redemptions = standing_redemptions(period).subquery()
    r_month = month_of(redemptions.c.created_at)
    money = dict(
        db.session.execute(
            select(
                r_month,
                func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence),
            ).group_by(r_month)
        ).all()
    )
    rows = []
    for name in months_in(period):
        minutes, volunteers = volunteering.get(name, (0, 0))
        moved = ledger.get(name, {})
        rows.append(
            {
                "month": name,
                "hours": hours_from_minutes(minutes),
                "volunteers": int(volunteers),
                "credits_earned": moved.get(TransactionKind.EARN.value, 0),
                "credits_spent": moved.get(TransactionKind.SPEND.value, 0),
                "credits_expired": moved.get(TransactionKind.EXPIRE.value, 0),
                "money_to_local_businesses_pence": int(money.get(name) or 0),
            }
        )
    return rows


def by_activity_field(period: Period, field: str) -> list[dict]:
    """Hours, credits, volunteers and activities by an activity column (category, ward)."""
    claims = approved_claims(period).subquery()
    column = getattr(Activity, field)
    found = {
        row[0]: row[1:]
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
    return by_activity_field(period, "category")


def by_ward(period: Period) -> list[dict]:
    """By ward: volunteering where the activity is, spending where the partner is."""
    rows = by_activity_field(period, "ward")
    redemptions = standing_redemptions(period).subquery()
    spending = {
        row[0]: row[1:]
        for row in db.session.execute(
            select(
                Partner.ward,
                func.coalesce(func.sum(redemptions.c.credits), 0),
                func.coalesce(
                    func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0
                ),
                func.count(distinct(redemptions.c.partner_id)),
            )
            .select_from(redemptions)
            .join(Partner, Partner.id == redemptions.c.partner_id)
            .group_by(Partner.ward)
        ).all()
    }
    known = {row["ward"] for row in rows}
    for ward in sorted(name for name in spending if name not in known):
        rows.append(
            {"ward": ward, "hours": Decimal("0.00"), "credits_earned": 0}
            | {"volunteers": 0, "activities_active": 0}
        )
    for row in rows:
        credits, pence, partners = spending.get(row["ward"], (0, 0, 0))
        row["credits_spent"] = int(credits)
        row["money_to_local_businesses_pence"] = int(pence)
        row["partners_active"] = int(partners)
        row["ward"] = row["ward"] or "Not given"
    return rows


def by_partner(period: Period) -> list[dict]:
    """Each partner's redemptions and what the scheme owes them for the period."""
    redemptions = standing_redemptions(period).subquery()
    rows = db.session.execute(
        select(
            Partner.id,
            Partner.name,
            Partner.ward,
            func.count(redemptions.c.id),
            func.coalesce(func.sum(redemptions.c.credits), 0),
            func.coalesce(func.sum(redemptions.c.credits * redemptions.c.settlement_rate_pence), 0),
        )
        .select_from(redemptions)
        .join(Partner, Partner.id == redemptions.c.partner_id)
        .group_by(Partner.id, Partner.name, Partner.ward)
        .order_by(Partner.name)
    ).all()
    return [
        {
            "partner": name,
            "ward": ward,
            "redemptions": int(count),
            "credits_spent": int(credits),
            "money_to_local_businesses_pence": int(pence),
            "partner_id": partner_id,
        }
        for partner_id, name, ward, count, credits, pence in rows
    ]


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
