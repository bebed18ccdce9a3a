"""partners, staff, offers, redemption codes, redemptions

Revision ID: c3partners01
Revises: b2volunteer1
Create Date: 2026-11-27 15:55:00

"""

from alembic import op
import sqlalchemy as sa
import core.timeutil


# revision identifiers, used by Alembic.
revision = "c3partners01"
down_revision = "b2volunteer1"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "partners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=60), nullable=False),
        sa.Column("ward", sa.String(length=80), nullable=False),
        sa.Column("opening_hours", sa.Text(), nullable=False),
        sa.Column("contact_name", sa.String(length=100), nullable=False),
        sa.Column("contact_email", sa.String(length=254), nullable=False),
        sa.Column("contact_phone", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("settlement_rate_pence", sa.Integer(), nullable=False),
        sa.Column("payout_method", sa.String(length=20), nullable=False),
        sa.Column("stripe_account_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "settlement_rate_pence >= 0", name=op.f("ck_partners_settlement_rate_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_partners_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_partners_decided_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partners_status"), ["status"], unique=False)

    op.create_table(
        "redemption_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["users.id"],
            name=op.f("fk_redemption_codes_resident_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_codes")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_redemption_codes_code_digest")),
    )
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_redemption_codes_resident_id"), ["resident_id"], unique=False
        )

    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("credit_cost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("days", sa.String(length=7), nullable=False),
        sa.Column("available_from", sa.Time(), nullable=True),
        sa.Column("available_until", sa.Time(), nullable=True),
        sa.Column("limit_per_resident", sa.Integer(), nullable=True),
        sa.Column("limit_period", sa.String(length=10), nullable=False),
        sa.Column("stock_total", sa.Integer(), nullable=True),
        sa.Column("stock_remaining", sa.Integer(), nullable=True),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("credit_cost > 0", name=op.f("ck_offers_credit_cost_positive")),
        sa.CheckConstraint("limit_per_resident > 0", name=op.f("ck_offers_limit_positive")),
        sa.CheckConstraint("stock_remaining >= 0", name=op.f("ck_offers_stock_not_negative")),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_offers_partner_id_partners"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offers_partner_id"), ["partner_id"], unique=False)

    op.create_table(
        "partner_memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invited_by_id"], ["users.id"], name=op.f("fk_partner_memberships_invited_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_partner_memberships_partner_id_partners"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_partner_memberships_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_memberships")),
        sa.UniqueConstraint("partner_id", "user_id", name="uq_partner_memberships_partner_user"),
    )
    with op.batch_alter_table("partner_memberships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_partner_memberships_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "redemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=True),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("settlement_rate_pence", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by_id", sa.Integer(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("reversal_transaction_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("credits > 0", name=op.f("ck_redemptions_credits_positive")),
        sa.ForeignKeyConstraint(
            ["cancelled_by_id"], ["users.id"], name=op.f("fk_redemptions_cancelled_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["code_id"],
            ["redemption_codes.id"],
            name=op.f("fk_redemptions_code_id_redemption_codes"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_redemptions_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_redemptions_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"], ["users.id"], name=op.f("fk_redemptions_resident_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["users.id"], name=op.f("fk_redemptions_staff_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("code_id", name=op.f("uq_redemptions_code_id")),
        sa.UniqueConstraint(
            "partner_id", "idempotency_key", name="uq_redemptions_partner_idempotency_key"
        ),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_redemptions_transaction_id")),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_redemptions_offer_resident", ["offer_id", "resident_id"], unique=False
        )
        batch_op.create_index(
            "ix_redemptions_partner_created", ["partner_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_redemptions_resident_id"), ["resident_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_redemptions_resident_id"))
        batch_op.drop_index("ix_redemptions_partner_created")
        batch_op.drop_index("ix_redemptions_offer_resident")

    op.drop_table("redemptions")
    with op.batch_alter_table("partner_memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partner_memberships_user_id"))

    op.drop_table("partner_memberships")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offers_partner_id"))

    op.drop_table("offers")
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_redemption_codes_resident_id"))

    op.drop_table("redemption_codes")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partners_status"))

    op.drop_table("partners")
