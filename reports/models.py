"""Indexes the reports need on other packages' tables (timings in bench/README.md).

Declared here, on the tables' metadata, so ``create_all`` and the migrations agree without
editing the owning packages' models. On PostgreSQL each is covering (``INCLUDE``), so the
year's figures are read from the index alone (an index-only scan), never the table rows.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.extensions import db
from partners.models import Redemption
from rewards.models import Transaction
from volunteering.models import Attendance, Claim, VolunteeringSession

#: Every index this package adds; bench/reports_bench.py drops and recreates them.
REPORT_INDEXES: list[Index] = [
    # The period's sessions, with their activity: the volunteering figures' starting point.
    Index(
        "ix_volunteering_sessions_report_starts",
        VolunteeringSession.__table__.c.starts_at,
        postgresql_include=["id", "activity_id"],
    ),
    # Each session's claims with what the reports add up.
    Index(
        "ix_claims_report_session",
        Claim.__table__.c.session_id,
        postgresql_include=["status", "resident_id", "minutes", "credits"],
    ),
    # "Had this resident volunteered before?": one probe per volunteer.
    Index(
        "ix_attendances_report_resident_time",
        Attendance.__table__.c.resident_id,
        Attendance.__table__.c.checked_in_at,
    ),
    # The ledger's movements in a period, by kind.
    Index(
        "ix_ledger_transactions_report_created",
        Transaction.__table__.c.created_at,
        postgresql_include=["kind", "amount", "reverses_id"],
    ),
    # Redemptions in a period, for spending, partners and money to local businesses.
    Index(
        "ix_redemptions_report_created",
        Redemption.__table__.c.created_at,
        postgresql_include=[
            "status",
            "resident_id",
            "partner_id",
            "credits",
            "settlement_rate_pence",
        ],
    ),
]


class LedgerDay(db.Model):
    """Credits the ledger moved on one closed day (UTC), by kind, net of reversals.

    A rollup, so a year's ledger figures add up 365 rows instead of millions of
    transactions. Only days that ended over a day ago are rolled up (no operation writes a
    transaction dated earlier than its own day), and ``RollupState`` says how far it goes;
    the reports read the days after that straight from the ledger.
    """

    __tablename__ = "report_ledger_days"

    #: The day (UTC).
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    #: The transaction kind; a reversal counts, negatively, as the kind it reversed.
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: Credits moved (negative when reversals outweigh).
    amount: Mapped[int] = mapped_column(BigInteger)


class RollupState(db.Model):
    """How far a rollup goes: every day before ``complete_before`` is in it."""

    __tablename__ = "report_rollups"

    #: The rollup's name, e.g. ``ledger_days``.
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The first day not rolled up yet.
    complete_before: Mapped[date] = mapped_column(Date)
