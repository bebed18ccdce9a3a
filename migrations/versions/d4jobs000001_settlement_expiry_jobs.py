"""Jobs: credit expiry reminders, partner settlements, payment files, Stripe Connect

Revision ID: d4jobs000001
Revises: c3partners01
Create Date: 2026-11-27 15:55:40.874185

"""

from alembic import op
import sqlalchemy as sa
import core.timeutil


# revision identifiers, used by Alembic.
revision = "d4jobs000001"
down_revision = "c3partners01"
branch_labels = None
depends_on = None


def upgrade():
    # Reviewed autogenerate: only the tables of issue 6.
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_stripe_events_event_id")),
    )
    op.create_table(
        "settlement_budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_end", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("amount_pence", sa.BigInteger(), nullable=True),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("set_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_by_id"], ["users.id"], name=op.f("fk_settlement_budgets_set_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_budgets")),
        sa.UniqueConstraint("period_end", name=op.f("uq_settlement_budgets_period_end")),
    )
    op.create_table(
        "settlement_payment_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("settlement_count", sa.Integer(), nullable=False),
        sa.Column("total_pence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paid_by_id", sa.Integer(), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["paid_by_id"],
            ["users.id"],
            name=op.f("fk_settlement_payment_batches_paid_by_id_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_payment_batches")),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("period_start", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("redemption_count", sa.Integer(), nullable=False),
        sa.Column("amount_pence", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("hold_reason", sa.String(length=40), nullable=True),
        sa.Column("ledger_transaction_id", sa.Integer(), nullable=False),
        sa.Column("payout_method", sa.String(length=20), nullable=True),
        sa.Column("transfer_attempt", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stripe_transfer_id", sa.String(length=64), nullable=True),
        sa.Column("stripe_destination", sa.String(length=64), nullable=True),
        sa.Column("payment_batch_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paid_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_pence >= 0", name=op.f("ck_settlements_amount_not_negative")),
        sa.CheckConstraint("credits > 0", name=op.f("ck_settlements_credits_positive")),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_settlements_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_settlements_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["payment_batch_id"],
            ["settlement_payment_batches.id"],
            name=op.f("fk_settlements_payment_batch_id_settlement_payment_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("partner_id", "period_end", name="uq_settlements_partner_period"),
        sa.UniqueConstraint("stripe_transfer_id", name=op.f("uq_settlements_stripe_transfer_id")),
    )
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settlements_partner_id"), ["partner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_settlements_payment_batch_id"), ["payment_batch_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_settlements_period_end"), ["period_end"], unique=False)
        batch_op.create_index(batch_op.f("ix_settlements_status"), ["status"], unique=False)

    op.create_table(
        "stripe_connected_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("details_submitted", sa.Boolean(), nullable=False),
        sa.Column("payouts_enabled", sa.Boolean(), nullable=False),
        sa.Column("last_payout_failure", sa.Text(), nullable=True),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_stripe_connected_accounts_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_connected_accounts")),
        sa.UniqueConstraint("account_id", name=op.f("uq_stripe_connected_accounts_account_id")),
        sa.UniqueConstraint("partner_id", name=op.f("uq_stripe_connected_accounts_partner_id")),
    )
    op.create_table(
        "credit_expiry_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("days_before", sa.Integer(), nullable=False),
        sa.Column("expires_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"],
            ["credit_lots.id"],
            name=op.f("fk_credit_expiry_reminders_lot_id_credit_lots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_expiry_reminders")),
        sa.UniqueConstraint("lot_id", "days_before", name="uq_credit_expiry_reminders_lot_days"),
    )
    op.create_table(
        "settlement_redemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("redemption_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_settlement_redemptions_redemption_id_redemptions"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_settlement_redemptions_settlement_id_settlements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_redemptions")),
        sa.UniqueConstraint("redemption_id", name=op.f("uq_settlement_redemptions_redemption_id")),
    )
    with op.batch_alter_table("settlement_redemptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_redemptions_settlement_id"), ["settlement_id"], unique=False
        )

    # ### end Alembic commands ###


def downgrade():
    # Reviewed autogenerate: only the tables of issue 6.
    with op.batch_alter_table("settlement_redemptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_redemptions_settlement_id"))

    op.drop_table("settlement_redemptions")
    op.drop_table("credit_expiry_reminders")
    op.drop_table("stripe_connected_accounts")
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlements_status"))
        batch_op.drop_index(batch_op.f("ix_settlements_period_end"))
        batch_op.drop_index(batch_op.f("ix_settlements_payment_batch_id"))
        batch_op.drop_index(batch_op.f("ix_settlements_partner_id"))

    op.drop_table("settlements")
    op.drop_table("settlement_payment_batches")
    op.drop_table("settlement_budgets")
    op.drop_table("stripe_events")
    # ### end Alembic commands ###
