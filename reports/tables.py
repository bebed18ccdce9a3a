"""The report tables: their columns, headings and how each value is shown and exported.

One definition drives the page's data tables, the charts and the CSV downloads, so the
three never disagree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    #: ``text``, ``number``, ``hours`` or ``pence``.
    kind: str = "number"


@dataclass(frozen=True)
class Table:
    name: str
    caption: str
    columns: tuple[Column, ...]
    #: The column a chart draws (None: no chart).
    chart: str | None = None


MONTHS = Table(
    "months",
    "By month",
    (
        Column("month", "Month", "text"),
        Column("hours", "Hours given", "hours"),
        Column("volunteers", "Volunteers"),
        Column("credits_earned", "Credits earned"),
        Column("credits_spent", "Credits spent"),
        Column("credits_expired", "Credits expired"),
        Column("money_to_local_businesses_pence", "Paid to local businesses", "pence"),
    ),
    chart="hours",
)
CATEGORIES = Table(
    "categories",
    "By category",
    (
        Column("category", "Category", "text"),
        Column("hours", "Hours given", "hours"),
        Column("credits_earned", "Credits earned"),
        Column("volunteers", "Volunteers"),
        Column("activities_active", "Activities"),
    ),
    chart="hours",
)
WARDS = Table(
    "wards",
    "By ward",
    (
        Column("ward", "Ward", "text"),
        Column("hours", "Hours given", "hours"),
        Column("credits_earned", "Credits earned"),
        Column("volunteers", "Volunteers"),
        Column("activities_active", "Activities"),
        Column("credits_spent", "Credits spent"),
        Column("partners_active", "Partners"),
        Column("money_to_local_businesses_pence", "Paid to local businesses", "pence"),
    ),
    chart="hours",
)
PARTNERS = Table(
    "partners",
    "By partner",
    (
        Column("partner", "Partner", "text"),
        Column("ward", "Ward", "text"),
        Column("redemptions", "Redemptions"),
        Column("credits_spent", "Credits spent"),
        Column("redeemed_value_pence", "Owed for the period's redemptions", "pence"),
        Column("money_to_local_businesses_pence", "Paid in the period", "pence"),
    ),
    chart="money_to_local_businesses_pence",
)
SUMMARY = Table(
    "summary",
    "The scheme at a glance",
    (Column("measure", "Measure", "text"), Column("value", "Value", "text")),
)

TABLES = {table.name: table for table in (SUMMARY, MONTHS, CATEGORIES, WARDS, PARTNERS)}

#: The summary's figures in the order and words of the dashboard.
SUMMARY_MEASURES = (
    ("hours", "Hours given", "hours"),
    ("credits_earned", "Credits earned", "number"),
    ("credits_spent", "Credits spent", "number"),
    ("credits_expired", "Credits expired", "number"),
    ("credits_gifted", "Credits given as gifts", "number"),
    ("credits_outstanding", "Credits outstanding at the end of the period", "number"),
    ("outstanding_liability_pence", "What outstanding credits could cost", "pence"),
    (
        "money_to_local_businesses_pence",
        "Paid to local businesses in the period (settlements paid)",
        "pence",
    ),
    ("owed_to_partners_pence", "Owed to partners now (not yet settled)", "pence"),
    (
        "redeemed_value_pence",
        "Value of the period's redemptions to partners (credits × rate, paid or not)",
        "pence",
    ),
    ("active_residents", "Active residents", "number"),
    ("volunteers", "Volunteers", "number"),
    ("first_time_volunteers", "First-time volunteers (had not volunteered before)", "number"),
    ("returning_volunteers", "Returning volunteers", "number"),
    ("new_volunteers", "New to the scheme and volunteered", "number"),
    ("activities_active", "Activities with hours given", "number"),
    ("partners_active", "Partners with redemptions", "number"),
    ("redemptions", "Redemptions", "number"),
)


def show(value, kind: str) -> str:
    """A value as people read it: 1,234 / 12.50 / £3.20."""
    if kind == "text":
        return "" if value is None else str(value)
    if kind == "pence":
        pounds = Decimal(int(value or 0)) / 100
        return f"£{pounds:,.2f}"
    if kind == "hours":
        return f"{Decimal(value or 0):,.2f}"
    return f"{int(value or 0):,}"


def export(value, kind: str) -> str:
    """A value in a CSV: plain numbers (pence as pence) so spreadsheets can add them up."""
    if value is None:
        return ""
    if kind == "hours":
        return f"{Decimal(value):.2f}"
    if kind == "text":
        text = str(value)
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
    return str(int(value))


def summary_rows(summary: dict) -> list[dict]:
    return [
        {"measure": label, "value": show(summary[key], kind), "key": key, "raw": summary[key]}
        for key, label, kind in SUMMARY_MEASURES
    ]


def to_csv(table: Table, rows: list[dict]) -> str:
    """The table as CSV, headings first."""
    out = io.StringIO()
    writer = csv.writer(out)
    if table is SUMMARY:
        writer.writerow(["measure", "value"])
        for row in rows:
            writer.writerow(
                [row["key"], export(row["raw"], "hours" if row["key"] == "hours" else "number")]
            )
        return out.getvalue()
    headings = [
        column.heading + (" (pence)" if column.kind == "pence" else "") for column in table.columns
    ]
    writer.writerow(headings)
    for row in rows:
        writer.writerow([export(row.get(column.key), column.kind) for column in table.columns])
    return out.getvalue()
