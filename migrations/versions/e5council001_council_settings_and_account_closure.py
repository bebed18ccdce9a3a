"""council: scheme settings saved by admins, closed accounts

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


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
    op.drop_table("scheme_settings")
