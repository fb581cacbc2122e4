"""attempt.record_failures: failed tries to record a finished attempt's success (bounded)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempt", sa.Column("record_failures", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("record_failures")
