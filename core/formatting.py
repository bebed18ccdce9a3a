"""Jinja filters for dates and amounts in plain English."""

from __future__ import annotations

from datetime import datetime


def long_date(value: datetime | None) -> str:
    """``3 November 2026``."""
    return f"{value.day} {value:%B %Y}" if value else ""


def short_date(value: datetime | None) -> str:
    """``3 Nov``."""
    return f"{value.day} {value:%b}" if value else ""


def date_time(value: datetime | None) -> str:
    """``3 November 2026, 2:05pm``."""
    if not value:
        return ""
    hour = value.hour % 12 or 12
    return f"{long_date(value)}, {hour}:{value:%M}{'am' if value.hour < 12 else 'pm'}"


def register_filters(app) -> None:
    app.add_template_filter(long_date)
    app.add_template_filter(short_date)
    app.add_template_filter(date_time)
