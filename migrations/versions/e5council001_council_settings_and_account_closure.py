"""council: scheme settings saved by admins, closed accounts, report indexes and rollup

Revision ID: e5council001
Revises: d4jobs000001
Create Date: 2026-11-27 15:57:49

"""

from alembic import op
import sqlalchemy as sa
import core.timeutil


# revision identifiers, used by Alembic.
revision = "e5council001"
down_revision = "d4jobs000001"
branch_labels = None
depends_on = None

REPORT_INDEXES = [
    (
        "ix_volunteering_sessions_report_starts",
        "volunteering_sessions",
        ["starts_at"],
        ["id", "activity_id"],
    ),
    (
        "ix_claims_report_session",
        "claims",
        ["session_id"],
        ["status", "resident_id", "minutes", "credits"],
    ),
    ("ix_attendances_report_resident_time", "attendances", ["resident_id", "checked_in_at"], []),
    (
        "ix_ledger_transactions_report_created",
        "ledger_transactions",
        ["created_at"],
        ["kind", "amount", "reverses_id"],
    ),
    (
        "ix_redemptions_report_created",
        "redemptions",
        ["created_at"],
        ["status", "resident_id", "partner_id", "credits", "settlement_rate_pence"],
    ),
]


def upgrade():
    op.create_table(
        "scheme_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_scheme_settings_updated_by_id_users")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheme_settings")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("closed_at", core.timeutil.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "report_ledger_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", name=op.f("pk_report_ledger_days")),
    )
    op.create_table(
        "report_rollups",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("complete_before", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_report_rollups")),
    )
    # Covering indexes of the reports (reports/models.py; timings in bench/README.md).
    for name, table, columns, include in REPORT_INDEXES:
        op.create_index(name, table, columns, postgresql_include=include)


def downgrade():
    for name, table, _columns, _include in reversed(REPORT_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("report_rollups")
    op.drop_table("report_ledger_days")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
    op.drop_table("scheme_settings")
