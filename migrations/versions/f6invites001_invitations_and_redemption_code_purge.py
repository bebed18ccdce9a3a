"""invitations of people without an account; an index for purging old redemption codes

Revision ID: f6invites001
Revises: e5council001
Create Date: 2026-11-27 18:40:29

"""

from alembic import op
import sqlalchemy as sa
import core.timeutil


# revision identifiers, used by Alembic.
revision = "f6invites001"
down_revision = "e5council001"
branch_labels = None
depends_on = None

#: At most one pending invitation per address, kind and target (core/invitations.py).
PENDING = "accepted_at IS NULL AND revoked_at IS NULL"


def upgrade():
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", core.timeutil.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accepted_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", core.timeutil.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["accepted_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_accepted_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_invited_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_revoked_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(
            "uq_invitations_pending",
            ["email", "kind", "target_id"],
            unique=True,
            sqlite_where=sa.text(PENDING),
            postgresql_where=sa.text(PENDING),
        )
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_redemption_codes_expires_at"), ["expires_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_redemption_codes_expires_at"))
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index("uq_invitations_pending")
    op.drop_table("invitations")
