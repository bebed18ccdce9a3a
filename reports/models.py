"""Indexes the reports need on other packages' tables (timings in bench/README.md).

Declared here, on the tables' metadata, so ``create_all`` and the migrations agree without
editing the owning packages' models. On PostgreSQL each is covering (``INCLUDE``), so the
year's figures are read from the index alone (an index-only scan), never the table rows.
"""

from __future__ import annotations

from sqlalchemy import Index

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
