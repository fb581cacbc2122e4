"""queues with limits, fair-share usage, job dependencies, holds, sweep trials, the cluster snapshot

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 20:00:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("held_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("sweep_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_job_sweep_id"), ["sweep_id"], unique=False)
        batch.create_index("ix_job_owner_status", ["owner", "status"], unique=False)
    op.create_table(
        "job_dependency",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=False),
        sa.Column("condition", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], name=op.f("fk_job_dependency_job_id_job")),
        sa.ForeignKeyConstraint(["parent_id"], ["job.id"], name=op.f("fk_job_dependency_parent_id_job")),
        sa.PrimaryKeyConstraint("job_id", "parent_id", name=op.f("pk_job_dependency")),
    )
    with op.batch_alter_table("job_dependency") as batch:
        batch.create_index(batch.f("ix_job_dependency_parent_id"), ["parent_id"], unique=False)
    queue = op.create_table(
        "queue",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_gpus", sa.Float(), nullable=True),
        sa.Column("max_cpus", sa.Float(), nullable=True),
        sa.Column("user_max_gpus", sa.Float(), nullable=True),
        sa.Column("user_max_cpus", sa.Float(), nullable=True),
        sa.Column("default_priority", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_queue")),
    )
    # every queue a job already names keeps working, without limits
    names = {row[0] for row in op.get_bind().execute(sa.text("SELECT DISTINCT queue FROM job"))} | {"default"}
    moment = datetime.now(UTC)
    op.bulk_insert(
        queue,
        [{"name": n, "description": "", "updated_by": "migration", "updated_at": moment} for n in sorted(names)],
    )
    op.create_table(
        "usage",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "owner", name=op.f("pk_usage")),
    )
    op.create_table(
        "cluster_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_state")),
    )


def downgrade() -> None:
    op.drop_table("cluster_state")
    op.drop_table("usage")
    op.drop_table("queue")
    with op.batch_alter_table("job_dependency") as batch:
        batch.drop_index(batch.f("ix_job_dependency_parent_id"))
    op.drop_table("job_dependency")
    with op.batch_alter_table("job") as batch:
        batch.drop_index("ix_job_owner_status")
        batch.drop_index(batch.f("ix_job_sweep_id"))
        batch.drop_column("trial_number")
        batch.drop_column("sweep_id")
        batch.drop_column("held_by")
        batch.drop_column("held_at")
