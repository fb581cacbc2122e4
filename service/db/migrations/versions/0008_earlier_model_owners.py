"""model_owner for the names trained before owners were recorded (0004 created the table empty):
each such name belongs to the owner of its first train job. An unclaimed name was open to everyone:
any user could evaluate it (reading its checkpoint) or train under it (taking over its versions).

Revision ID: 0008_earlier_model_owners
Revises: 0007_models_work
Create Date: 2026-11-28 16:45:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008_earlier_model_owners"
down_revision = "0007_models_work"
branch_labels = None
depends_on = None

job = sa.table(
    "job",
    sa.column("kind", sa.String),
    sa.column("owner", sa.String),
    sa.column("model_name", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
model_owner = sa.table(
    "model_owner",
    sa.column("name", sa.String),
    sa.column("owner", sa.String),
    sa.column("group", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    connection = op.get_bind()
    claimed: set[str] = set(connection.execute(sa.select(model_owner.c.name)).scalars())
    first: dict[str, tuple[str, datetime | None]] = {}
    trained = connection.execute(
        sa.select(job.c.model_name, job.c.owner, job.c.created_at)
        .where(job.c.kind == "train", job.c.model_name.is_not(None))
        .order_by(job.c.created_at)
    )
    for name, owner, created_at in trained.tuples():
        if name not in claimed:
            first.setdefault(str(name), (str(owner), created_at))
    if first:
        op.bulk_insert(
            model_owner,
            [
                {"name": name, "owner": owner, "group": None, "created_at": created_at or datetime.now(UTC)}
                for name, (owner, created_at) in first.items()
            ],
        )


def downgrade() -> None:
    pass  # the owners stay: which rows this migration added is not recorded, and they are right
