"""Reading a report's period from ``?from=&to=`` (ISO dates, both days included)."""

from __future__ import annotations

from datetime import date, timedelta

from core.errors import InvalidRequest
from core.timeutil import utcnow
from reports.queries import Period

#: The longest period one report covers (a guard against a 100-year table of months).
MAX_DAYS = 3660


def default_period(today: date | None = None) -> Period:
    """The last twelve months: from the first day of the month eleven months ago to today."""
    today = today or utcnow().date()
    first = today.replace(day=1)
    for _ in range(11):
        first = (first - timedelta(days=1)).replace(day=1)
    return Period.from_dates(first, today)


def parse_date(raw: str | None, field: str) -> date | None:
    """A date given as YYYY-MM-DD (or a full ISO timestamp: its date is used)."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise InvalidRequest(
            f"The {field} date must be a real date, like 2026-11-27",
            {field: ["Not a date (YYYY-MM-DD)."]},
        ) from None


def period_from_args(raw_from: str | None, raw_to: str | None) -> Period:
    """The period the caller asked for; the default fills what is missing."""
    default = default_period()
    first = parse_date(raw_from, "from") or default.first_day
    last = parse_date(raw_to, "to") or default.last_day
    if last < first:
        raise InvalidRequest(
            "The 'to' date must be the same as or after the 'from' date",
            {"to": ["Before the from date."]},
        )
    if (last - first).days > MAX_DAYS:
        raise InvalidRequest("A report can cover at most ten years", {"from": ["Period too long."]})
    return Period.from_dates(first, last)
