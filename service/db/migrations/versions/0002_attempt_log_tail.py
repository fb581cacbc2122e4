"""attempt.log_tail: the end of each attempt's log, kept once the attempt ends

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempt", sa.Column("log_tail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempt") as batch:
        batch.drop_column("log_tail")
