"""On PostgreSQL: a period's volunteering and spending figures in one statement.

The dashboard needs, for one period, the headline volunteering figures (minutes,
volunteers, first-time and new volunteers, active residents, activities), volunteers,
hours and credits by month, by category and by ward, and redemptions by partner and month.
Asked one table at a time that is four passes over the period's claims (each a join of
sessions to claims) and four over its redemptions. Here the claims and the redemptions are
each read once, into a materialised CTE, and everything is folded from those:

- **the claims** are reached from the period's sessions, one probe each into the claims'
  covering index (``OFFSET 0`` keeps the planner from merging them with every claim of
  every year), so the work grows with the period, not the scheme's history.
- **per resident**: minutes, and a bit set of the months, categories and wards they gave
  time in (``bit_or`` of one bit per session, the bits worked out once per session, not
  per claim). Counting, for each bit, the residents that have it gives the volunteers of
  every month, category and ward without a ``count(DISTINCT ...)`` (a sort) per table.
  Bits are numbered months first, then categories, then wards; a bigint holds 63 of
  them, and as many bigints are used as there are bits.
- **per activity** and **per month**: minutes and credits (small: one row each).
- **per partner and month**: redemptions, credits and pence (small).
- **new volunteers**: the users who joined in the period, matched against the first-time
  volunteers (a hash of them), instead of looking up every volunteer's user row.
- **first-time volunteers**: one index probe per volunteer (``ix_attendances_report_resident_time``)
  for an attendance before the period, done once per volunteer (a materialised CTE).
- **active residents**: volunteers, plus the spenders who did not volunteer (an anti-join
  against the volunteers, not a ``UNION`` of every redemption).

The figures are the same as ``reports.queries``'s one-table-at-a-time queries (used on
SQLite), which tests check on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

from core.extensions import db
from partners.models import RedemptionStatus
from volunteering.models import Activity, ClaimStatus

#: Bits per bigint word (the sign bit is left alone).
WORD = 63


@dataclass
class OnePass:
    """What one statement found for a period (see the module's docstring)."""

    #: minutes, volunteers, first_time_volunteers, new_volunteers, active_residents,
    #: activities_active.
    people: dict[str, int]
    #: ``YYYY-MM`` -> (minutes, volunteers) for months with approved claims.
    months: dict[str, tuple[int, int]]
    #: category -> (minutes, credits, volunteers, activities), categories with claims.
    categories: dict[str, tuple[int, int, int, int]]
    #: ward -> (minutes, credits, volunteers, activities), wards with claims.
    wards: dict[str, tuple[int, int, int, int]]
    #: (partner id, ``YYYY-MM``, redemptions, credits, pence) of standing redemptions.
    spending: list[tuple[int, str, int, int, int]]


def word_expression(positions: list[str], word: int) -> str:
    """SQL for one session's bigint ``word``: its bits among ``positions`` (SQL ints)."""
    parts = [
        f"(CASE WHEN {p} / {WORD} = {word} THEN 1::bigint << ({p} % {WORD}) ELSE 0 END)"
        for p in positions
    ]
    return " | ".join(parts)


def month_index(column: str) -> str:
    """SQL: months from the period's first month to ``column``'s month (UTC)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return f"((date_part('year', {utc}) * 12 + date_part('month', {utc}))::int - :base)"


BREAKDOWNS = """,
    (SELECT json_agg(json_build_array(q.activity_id, a.category, a.ward, q.pm, q.minutes,
                                      q.credits))
     FROM (SELECT activity_id, pm, sum(minutes) AS minutes, sum(credits) AS credits
           FROM yc GROUP BY activity_id, pm) q
     JOIN acts a ON a.id = q.activity_id) AS activities,
    (SELECT ARRAY[{counts}] FROM flagged) AS bit_counts"""

#: Without the breakdowns, the activities are only counted.
ACTIVITIES = """,
    (SELECT count(DISTINCT activity_id) FROM yc) AS activities_active"""

#: The statement; only this module's own SQL fragments are put into it, values are bound.
STATEMENT = """
WITH acts AS MATERIALIZED (
    SELECT id, category, ward,
        :months + array_position(:categories, category::text) - 1 AS pc,
        :months + :category_count + array_position(:wards, ward::text) - 1 AS pw
    FROM activities
),
ses AS MATERIALIZED (
    SELECT s.id, s.activity_id, p.pm,
        {word_columns}
    FROM volunteering_sessions s
    JOIN acts a ON a.id = s.activity_id
    CROSS JOIN LATERAL (SELECT {session_month} AS pm) p
    WHERE s.starts_at >= :start AND s.starts_at < :end
),
yc AS MATERIALIZED (
    SELECT c.resident_id, c.minutes, c.credits, ses.activity_id, ses.pm, {carried}
    FROM ses CROSS JOIN LATERAL (
        SELECT resident_id, minutes, credits FROM claims
        WHERE claims.session_id = ses.id AND claims.status = :approved
        OFFSET 0
    ) c
),
per_resident AS MATERIALIZED (
    SELECT resident_id, sum(minutes) AS minutes, {folded}
    FROM yc GROUP BY resident_id
),
flagged AS MATERIALIZED (
    SELECT pr.resident_id, pr.minutes, {kept},
        {first} AS first
    FROM per_resident pr
){spending_cte}
SELECT
    (SELECT coalesce(sum(minutes), 0) FROM flagged) AS minutes,
    (SELECT count(*) FROM flagged) AS volunteers,
    (SELECT coalesce(sum(first), 0) FROM flagged) AS first,
    (SELECT count(*) FROM users u
     WHERE u.created_at >= :start AND u.created_at < :end
       AND EXISTS (SELECT 1 FROM flagged f WHERE f.resident_id = u.id AND f.first = 1)
    ) AS new,
    {spending_columns}{breakdowns}
"""

#: Whether a volunteer gave time before the period (1: this is their first time).
FIRST_TIME = """CASE WHEN EXISTS (
            SELECT 1 FROM attendances att
            WHERE att.resident_id = pr.resident_id AND att.checked_in_at < :start
        ) THEN 0 ELSE 1 END"""

#: The period's redemptions, read once (left out when only volunteering is asked for).
SPENDING_CTE = """,
yr AS MATERIALIZED (
    SELECT r.resident_id, r.partner_id, {redemption_month} AS pm, r.credits,
        r.credits * r.settlement_rate_pence AS pence
    FROM redemptions r
    WHERE r.status = :completed AND r.created_at >= :start AND r.created_at < :end
)"""
SPENDING_COLUMNS = """(SELECT count(DISTINCT resident_id) FROM yr
     WHERE NOT EXISTS (SELECT 1 FROM per_resident pr WHERE pr.resident_id = yr.resident_id)
    ) AS spenders_only,
    (SELECT json_agg(json_build_array(partner_id, pm, redemptions, credits, pence))
     FROM (SELECT partner_id, pm, count(*) AS redemptions, sum(credits) AS credits,
                  sum(pence) AS pence
           FROM yr GROUP BY partner_id, pm) q) AS spending"""
NO_SPENDING_COLUMNS = """0 AS spenders_only, NULL AS spending,
    (SELECT array_agg(resident_id) FROM per_resident) AS volunteer_ids"""

#: The period's redemptions on their own: who spent, and by partner and month. Run beside
#: the volunteering statement (another connection, the server's other core).
SPENDING_STATEMENT = """
WITH yr AS MATERIALIZED (
    SELECT r.resident_id, r.partner_id, {redemption_month} AS pm, r.credits,
        r.credits * r.settlement_rate_pence AS pence
    FROM redemptions r
    WHERE r.status = :completed AND r.created_at >= :start AND r.created_at < :end
)
SELECT
    (SELECT array_agg(DISTINCT resident_id) FROM yr) AS spender_ids,
    (SELECT json_agg(json_build_array(partner_id, pm, redemptions, credits, pence))
     FROM (SELECT partner_id, pm, count(*) AS redemptions, sum(credits) AS credits,
                  sum(pence) AS pence
           FROM yr GROUP BY partner_id, pm) q) AS spending
"""


def spending_pass(period) -> tuple[set[int], list]:
    """``SPENDING_STATEMENT`` for ``period``: (the residents who spent, the raw rows)."""
    first = period.first_day
    row = (
        db.session.execute(
            text(SPENDING_STATEMENT.format(redemption_month=month_index("r.created_at"))),
            {
                "start": period.start,
                "end": period.end,
                "base": first.year * 12 + first.month,
                "completed": RedemptionStatus.COMPLETED.value,
            },
        )
        .mappings()
        .one()
    )
    return set(row["spender_ids"] or ()), row["spending"] or []


def statement(
    bits: int, *, breakdowns: bool, first_time: bool = True, spending: bool = True
) -> str:
    """The statement for ``bits`` bits (months, categories and wards), in bigint words.

    Without ``first_time``, no look-ups of who volunteered before the period; without
    ``spending``, no redemptions: the volunteers' ids come back instead, for
    ``SPENDING_STATEMENT``'s answer to be joined to (see ``one_pass``)."""
    words = max(1, -(-bits // WORD))
    counts = ", ".join(f"sum((w{p // WORD} >> {p % WORD}) & 1)" for p in range(bits))
    return STATEMENT.format(
        word_columns=",\n        ".join(
            f"{word_expression(['p.pm', 'a.pc', 'a.pw'], k)} AS w{k}" for k in range(words)
        ),
        session_month=month_index("s.starts_at"),
        first=FIRST_TIME if first_time else "0",
        spending_cte=SPENDING_CTE.format(redemption_month=month_index("r.created_at"))
        if spending
        else "",
        spending_columns=SPENDING_COLUMNS if spending else NO_SPENDING_COLUMNS,
        carried=", ".join(f"ses.w{k}" for k in range(words)),
        folded=", ".join(f"bit_or(w{k}) AS w{k}" for k in range(words)),
        kept=", ".join(f"pr.w{k}" for k in range(words)),
        breakdowns=BREAKDOWNS.format(counts=counts or "0") if breakdowns else ACTIVITIES,
    )


def distinct_values(column) -> list[str]:
    return list(db.session.execute(select(column).distinct()).scalars())


def one_pass(
    period,
    months: list[str],
    *,
    breakdowns: bool = True,
    volunteering_only: bool = False,
    alongside=None,
    tries: int = 3,
) -> OnePass:
    """Everything above for ``period`` (``months``: its ``YYYY-MM``, in order).

    ``volunteering_only`` leaves out what the month and category tables do not show: the
    redemptions (``spending`` comes back empty, active residents are volunteers only) and
    which volunteers are new (``first_time_volunteers`` and ``new_volunteers`` are 0).

    ``alongside(function, *args)`` (it returns a function that waits for the answer) runs
    the redemptions' part on another connection while this one reads the volunteering; the
    spenders who did not volunteer are then counted here from the two sets of ids.

    The categories and wards are read just before the statement; should an activity with a
    new one be added in between, its bit would be missing, so the whole is read again.
    """
    split = alongside is not None and not volunteering_only
    spent = alongside(spending_pass, period) if split else None
    categories = distinct_values(Activity.category) if breakdowns else []
    wards = distinct_values(Activity.ward) if breakdowns else []
    bits = len(months) + len(categories) + len(wards) if breakdowns else 0
    sql = statement(
        bits,
        breakdowns=breakdowns,
        first_time=not volunteering_only,
        spending=not volunteering_only and not split,
    )
    query = text(sql).bindparams(
        bindparam("categories", type_=ARRAY(String)),
        bindparam("wards", type_=ARRAY(String)),
    )
    first = period.first_day
    row = (
        db.session.execute(
            query,
            {
                "start": period.start,
                "end": period.end,
                "base": first.year * 12 + first.month,
                "months": len(months),
                "categories": categories,
                "category_count": len(categories),
                "wards": wards,
                "approved": ClaimStatus.APPROVED.value,
                "completed": RedemptionStatus.COMPLETED.value,
            },
        )
        .mappings()
        .one()
    )
    spenders_only, raw_spending = int(row["spenders_only"]), row["spending"]
    if split:
        spender_ids, raw_spending = spent()
        spenders_only = len(spender_ids.difference(row["volunteer_ids"] or ()))
    volunteers = int(row["volunteers"])
    people = {
        "minutes": int(row["minutes"]),
        "volunteers": volunteers,
        "first_time_volunteers": int(row["first"]),
        "new_volunteers": int(row["new"]),
        "active_residents": volunteers + spenders_only,
    }
    spending = [
        (int(partner), months[int(pm)], int(count), int(credits), int(pence))
        for partner, pm, count, credits, pence in raw_spending or []
    ]
    found = OnePass(people, {}, {}, {}, spending)
    if not breakdowns:
        people["activities_active"] = int(row["activities_active"])
        return found
    counts = [int(n or 0) for n in row["bit_counts"]]  # no rows: NULL sums
    month_volunteers = counts[: len(months)]
    category_volunteers = dict(
        zip(categories, counts[len(months) : len(months) + len(categories)], strict=True)
    )
    ward_volunteers = dict(zip(wards, counts[len(months) + len(categories) :], strict=True))
    activities = row["activities"] or []
    if tries > 1 and any(
        a[1] not in category_volunteers or a[2] not in ward_volunteers for a in activities
    ):
        return one_pass(
            period,
            months,
            breakdowns=breakdowns,
            volunteering_only=volunteering_only,
            alongside=alongside,
            tries=tries - 1,
        )
    people["activities_active"] = len({a[0] for a in activities})
    month_minutes: dict[int, int] = {}
    for _activity, _category, _ward, pm, minutes, _credits in activities:
        month_minutes[int(pm)] = month_minutes.get(int(pm), 0) + int(minutes)
    for pm, minutes in month_minutes.items():
        found.months[months[pm]] = (minutes, month_volunteers[pm])
    for field, into, volunteers_of in (
        (1, found.categories, category_volunteers),
        (2, found.wards, ward_volunteers),
    ):
        totals: dict[str, list] = {}
        for activity in activities:
            total = totals.setdefault(activity[field], [0, 0, set()])
            total[0] += int(activity[4])
            total[1] += int(activity[5])
            total[2].add(activity[0])
        for name, (minutes, credits, active) in totals.items():
            into[name] = (minutes, credits, volunteers_of.get(name, 0), len(active))
    return found
