"""alias_move (every alias move: who, when, the figures compared), eval_cache (one evaluation per
(model version, evaluation config)) and job.auto_evaluate (a train job's opt-out of the standard evaluation)

Revision ID: 0007_models_work
Revises: 0006
Create Date: 2026-11-27 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_models_work"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alias_move",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("previous_version", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_move")),
    )
    with op.batch_alter_table("alias_move") as batch:
        batch.create_index(batch.f("ix_alias_move_model_name"), ["model_name"], unique=False)
    op.create_table(
        "eval_cache",
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("standard", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "model_version", "config_hash", name=op.f("pk_eval_cache")),
    )
    with op.batch_alter_table("eval_cache") as batch:
        batch.create_index(batch.f("ix_eval_cache_job_id"), ["job_id"], unique=True)
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("auto_evaluate", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("auto_evaluate")
    with op.batch_alter_table("eval_cache") as batch:
        batch.drop_index(batch.f("ix_eval_cache_job_id"))
    op.drop_table("eval_cache")
    with op.batch_alter_table("alias_move") as batch:
        batch.drop_index(batch.f("ix_alias_move_model_name"))
    op.drop_table("alias_move")
