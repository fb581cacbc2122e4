"""sweep: hyperparameter searches whose trials are jobs and whose search state is an Optuna study

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("base_spec", sa.JSON(), nullable=False),
        sa.Column("study_name", sa.String(length=200), nullable=False),
        sa.Column("max_trials", sa.Integer(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("max_failed_trials", sa.Integer(), nullable=False),
        sa.Column("stop_running", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("best", sa.JSON(), nullable=True),
        sa.Column("mlflow_experiment_id", sa.String(length=64), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("summarized", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep")),
    )
    with op.batch_alter_table("sweep") as batch:
        batch.create_index("ix_sweep_created", ["created_at", "id"], unique=False)
        batch.create_index(batch.f("ix_sweep_owner"), ["owner"], unique=False)
        batch.create_index(batch.f("ix_sweep_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sweep") as batch:
        batch.drop_index(batch.f("ix_sweep_status"))
        batch.drop_index(batch.f("ix_sweep_owner"))
        batch.drop_index("ix_sweep_created")
    op.drop_table("sweep")
