"""Scheme settings an admin changes on a page, stored in the database, every change audited.

Design:
- ``SETTINGS`` defines each rule an admin may change: the ``app.config`` key other packages
  already read (``current_app.config["CLAIM_DAILY_MAX_HOURS"]``), its kind, and a default
  used when the configuration does not name the key at all.
- A saved value is a ``SchemeSetting`` row. Packages keep reading ``app.config``: the saved
  values are applied into ``app.config`` whenever an application context starts (every
  request, every Celery task, every CLI command), so no package had to change.
- Applying is cheap: a process checks the table's signature (row count and latest change,
  one indexed aggregate on a table of a dozen rows) at most every
  ``SETTINGS_REFRESH_SECONDS`` (5 s by default, 1 in tests), and reloads the rows only
  when the signature moved. A change saved in this process applies at once.
- Values the admin has not changed fall back to the configured defaults captured at start-up
  (environment and code), so removing an override restores the deployment's value.

``get_setting(name)`` is the API for new code: the saved value, or the configured default.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, appcontext_pushed, current_app
from sqlalchemy import func, select

from core.audit import record
from core.errors import InvalidRequest
from core.extensions import db
from core.models import SchemeSetting, User
from core.timeutil import utcnow


@dataclass(frozen=True)
class SettingDefinition:
    """One scheme rule an admin may change."""

    #: The ``app.config`` key (also the row's name).
    name: str
    #: Short label and hint for the settings page.
    label: str
    hint: str
    #: ``int``, ``optional_int`` (blank means no limit), ``int_list`` or ``text_list``.
    kind: str
    #: Used when the configuration does not define ``name``.
    default: Any
    #: Bounds for numbers (inclusive).
    minimum: int = 0
    maximum: int = 1_000_000_000
    #: Section heading on the page.
    group: str = "Credits"
    unit: str = ""
    extra: dict = field(default_factory=dict)


SETTINGS: list[SettingDefinition] = [
    SettingDefinition(
        "CREDIT_VALIDITY_DAYS",
        "Credit validity",
        "How many days earned credits can be used before they expire.",
        "int",
        365,
        minimum=1,
        maximum=3650,
        unit="days",
    ),
    SettingDefinition(
        "CREDIT_EXPIRY_REMINDER_DAYS",
        "Expiry reminders",
        "Email residents this many days before their credits expire. "
        "Separate several numbers with commas, for example 30, 7.",
        "int_list",
        [30, 7],
        minimum=1,
        maximum=365,
        unit="days before",
    ),
    SettingDefinition(
        "CREDIT_EXPIRY_GRACE_DAYS",
        "Expiry grace period",
        "Credits are taken away this many days after their expiry date.",
        "int",
        0,
        maximum=365,
        unit="days",
    ),
    SettingDefinition(
        "CHECKIN_GRACE_MINUTES",
        "Check-out grace period",
        "Minutes after a session's scheduled end that still count and still accept scans.",
        "int",
        15,
        maximum=240,
        unit="minutes",
        group="Volunteering",
    ),
    SettingDefinition(
        "CLAIM_AUTO_APPROVE_MAX_MINUTES",
        "Automatic approval: most minutes",
        "Claims for more minutes than this wait for council approval.",
        "int",
        240,
        maximum=1440,
        unit="minutes",
        group="Volunteering",
    ),
    SettingDefinition(
        "CLAIM_AUTO_APPROVE_MAX_CREDITS",
        "Automatic approval: most credits",
        "Claims for more credits than this wait for council approval.",
        "int",
        8,
        maximum=1000,
        unit="credits",
        group="Volunteering",
    ),
    SettingDefinition(
        "CLAIM_DAILY_MAX_HOURS",
        "Daily maximum hours",
        "More hours than this given by one resident in one day flags the claim.",
        "int",
        8,
        minimum=1,
        maximum=24,
        unit="hours",
        group="Volunteering",
    ),
    SettingDefinition(
        "PARTNER_DEFAULT_SETTLEMENT_RATE_PENCE",
        "Default settlement rate",
        "What the scheme pays a new partner for each credit redeemed, in pence. "
        "Existing partners keep their own rate.",
        "int",
        100,
        maximum=100_000,
        unit="pence per credit",
        group="Partners",
    ),
    SettingDefinition(
        "SETTLEMENT_BUDGET_PENCE",
        "Settlement budget per period",
        "The most the scheme pays partners in one settlement period, in pence. "
        "Leave blank for no limit.",
        "optional_int",
        None,
        maximum=10_000_000_000,
        unit="pence",
        group="Partners",
    ),
    SettingDefinition(
        "VOLUNTEERING_CATEGORIES",
        "Activity categories",
        "The categories organisers choose from, one on each line.",
        "text_list",
        [],
        minimum=1,
        maximum=100,
        group="Lists",
    ),
    SettingDefinition(
        "VOLUNTEERING_WARDS",
        "Wards",
        "The council wards activities and partners are in, one on each line.",
        "text_list",
        [],
        minimum=1,
        maximum=100,
        group="Lists",
    ),
]

BY_NAME = {definition.name: definition for definition in SETTINGS}

EXTENSION = "civic_credits.settings"


class SettingsCache:
    """One process's view of the saved settings and the defaults they override."""

    def __init__(self, app: Flask):
        #: The configured values before any saved override (environment and code).
        self.baseline = {d.name: app.config.get(d.name, d.default) for d in SETTINGS}
        for name, value in self.baseline.items():
            app.config.setdefault(name, value)
        self.signature: tuple | None = None
        self.checked_at = 0.0
        self.overrides: dict[str, Any] = {}
        self.lock = threading.Lock()

    def apply(self, app: Flask, overrides: dict[str, Any], signature: tuple | None) -> None:
        """Put the saved values (or the baseline where none is saved) into ``app.config``."""
        with self.lock:
            # Only keys saved now or saved before are touched: a key never overridden keeps
            # whatever the deployment (or a test) put in app.config.
            for name in set(overrides) | set(self.overrides):
                app.config[name] = overrides.get(name, self.baseline[name])
            self.overrides = dict(overrides)
            self.signature = signature
            self.checked_at = time.monotonic()


def init_app(app: Flask) -> None:
    """Capture the configured defaults and apply saved settings in every app context."""
    # Tests look again every second; they save settings in the same process, which applies
    # them at once (apply_now), and remove them after themselves.
    app.config.setdefault("SETTINGS_REFRESH_SECONDS", 1 if app.testing else 5)
    app.extensions[EXTENSION] = SettingsCache(app)
    appcontext_pushed.connect(_on_app_context, app, weak=False)


def _on_app_context(app: Flask, **_kwargs) -> None:
    refresh(app)


def _table_signature(connection) -> tuple:
    row = connection.execute(
        select(func.count(), func.max(SchemeSetting.updated_at)).select_from(SchemeSetting)
    ).one()
    return (row[0], str(row[1]))


def refresh(app: Flask | None = None, *, force: bool = False) -> None:
    """Apply saved settings to ``app.config`` if they changed since this process looked."""
    app = app or current_app._get_current_object()
    cache: SettingsCache | None = app.extensions.get(EXTENSION)
    if cache is None:
        return
    interval = float(app.config.get("SETTINGS_REFRESH_SECONDS", 5))
    if not force and time.monotonic() - cache.checked_at < interval:
        return
    try:
        # Its own connection, so a failure here cannot poison the request's transaction;
        # closed for good afterwards (invalidate), so an app that never touches the
        # database otherwise (a health check, a test's app) keeps no connection open.
        with db.engine.connect() as connection:
            try:
                signature = _table_signature(connection)
                rows = None
                if signature != cache.signature or force:
                    rows = connection.execute(select(SchemeSetting.name, SchemeSetting.value)).all()
            finally:
                connection.invalidate()
    except Exception:  # noqa: BLE001 - no table yet (before `db upgrade`): use the defaults
        cache.checked_at = time.monotonic()
        return
    if rows is None:
        cache.checked_at = time.monotonic()
        return
    overrides = {name: value for name, value in rows if name in BY_NAME}
    cache.apply(app, overrides, signature)


def get_setting(name: str):
    """The value of scheme setting ``name``: saved by an admin, else the configured default."""
    definition = BY_NAME.get(name)
    config = current_app.config
    if definition is None:
        return config[name]
    return config.get(name, definition.default)


def saved_settings() -> dict[str, SchemeSetting]:
    """The rows saved in the database, by name."""
    rows = db.session.execute(select(SchemeSetting)).scalars().all()
    return {row.name: row for row in rows}


def configured_default(name: str):
    """What applies when no value is saved: the environment's or the code's default."""
    cache: SettingsCache = current_app.extensions[EXTENSION]
    return cache.baseline[name]


def parse_value(definition: SettingDefinition, raw: str) -> Any:
    """The typed value of what an admin typed; ``InvalidRequest`` naming the field if wrong."""
    text = (raw or "").strip()
    name = definition.name

    def refuse(message: str):
        raise InvalidRequest(message, {name: [message]})

    def number(piece: str) -> int:
        cleaned = piece.strip().replace(",", "").replace("_", "")
        if not cleaned.lstrip("-").isdigit():
            refuse(f"{definition.label} must be a whole number")
        value = int(cleaned)
        if not definition.minimum <= value <= definition.maximum:
            refuse(
                f"{definition.label} must be between {definition.minimum:,} "
                f"and {definition.maximum:,}"
            )
        return value

    if definition.kind == "int":
        if not text:
            refuse(f"Enter {definition.label.lower()}")
        return number(text)
    if definition.kind == "optional_int":
        return number(text) if text else None
    if definition.kind == "int_list":
        pieces = [piece for piece in text.replace(";", ",").split(",") if piece.strip()]
        if not pieces:
            refuse(f"Enter at least one number for {definition.label.lower()}")
        values = sorted({number(piece) for piece in pieces}, reverse=True)
        if len(values) > 10:
            refuse(f"Enter at most 10 numbers for {definition.label.lower()}")
        return values
    if definition.kind == "text_list":
        items: list[str] = []
        for line in text.splitlines():
            item = " ".join(line.split())
            if not item:
                continue
            if len(item) > 100:
                refuse(f"Each line of {definition.label.lower()} must be 100 characters or fewer")
            if item not in items:
                items.append(item)
        if len(items) < definition.minimum:
            refuse(f"Enter at least {definition.minimum} line for {definition.label.lower()}")
        if len(items) > definition.maximum:
            refuse(f"Enter at most {definition.maximum} lines for {definition.label.lower()}")
        return items
    raise ValueError(f"unknown setting kind {definition.kind}")


def format_value(definition: SettingDefinition, value: Any) -> str:
    """How a value is shown in a form field."""
    if value is None:
        return ""
    if definition.kind == "int_list":
        return ", ".join(str(v) for v in value)
    if definition.kind == "text_list":
        return "\n".join(value)
    return str(value)


def describe_value(definition: SettingDefinition, value: Any) -> str:
    """How a value is shown in a summary ("365 days", "No limit")."""
    if value is None:
        return "No limit"
    if definition.kind == "text_list":
        return f"{len(value)} entries"
    text = format_value(definition, value)
    return f"{text} {definition.unit}".strip()


def set_setting(actor: User, name: str, value: Any, reason: str | None = None) -> bool:
    """Save an admin's value for ``name`` and audit it; returns False when nothing changed.

    Flushes, never commits. The new value applies in this process at once and in the
    others within ``SETTINGS_REFRESH_SECONDS``.
    """
    definition = BY_NAME.get(name)
    if definition is None:
        raise InvalidRequest(f"There is no setting called {name}.", {name: ["Unknown setting."]})
    # Compared with what is saved (not this process's copy, which may be seconds old).
    row = db.session.get(SchemeSetting, name, with_for_update=True)
    old = row.value if row is not None else configured_default(name)
    if old == value:
        return False
    if row is None:
        row = SchemeSetting(name=name)
        db.session.add(row)
    row.value = value
    row.updated_at = utcnow()
    row.updated_by_id = actor.id
    db.session.flush()
    record(
        actor,
        "setting.changed",
        f"setting:{name}",
        reason=reason or None,
        details={"old": old, "new": value},
    )
    return True


def apply_now() -> None:
    """After the commit: make this process use the new values at once."""
    refresh(current_app._get_current_object(), force=True)
