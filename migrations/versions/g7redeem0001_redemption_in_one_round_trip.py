"""PostgreSQL: civic_redeem_at_once, a till's usual redemption in one round trip

Revision ID: g7redeem0001
Revises: f6invites001
Create Date: 2026-11-27 21:20:00

The function's text is partners/redeem_at_once.py's (``CREATE OR REPLACE``; it is also
what ``create_all`` installs). A later change to it comes with a migration of its own that
replaces it again. SQLite has no functions: there ``partners.operations.redeem`` does the
work step by step, as it does on PostgreSQL whenever the function leaves it to it.
"""

from alembic import op

from partners.redeem_at_once import DROP_SQL, FUNCTION_SQL

# revision identifiers, used by Alembic.
revision = "g7redeem0001"
down_revision = "f6invites001"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION_SQL)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_SQL)
