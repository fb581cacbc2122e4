"""What the service refused only later, in rows stored before:

- a sweep's model name: sweeps did not claim their base's `model_name`, so their trials registered
  versions under a name nobody owned (open to any user's jobs) or under another user's. A name no
  one owns now belongs to whoever trained under it first, a sweep (its creation) or a train job.
- lone surrogates (JSON's "\\ud800" escapes) in a job's spec or a sweep's request: every answer that
  showed the row failed (UTF-8 cannot encode them). The json columns of SQLite and PostgreSQL alike
  keep the escape as it was written. They are replaced with U+FFFD, the replacement character.

Revision ID: 0009_sweep_names_and_surrogates
Revises: 0008_earlier_model_owners
Create Date: 2026-11-29 10:10:00
"""

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_sweep_names_and_surrogates"
down_revision = "0008_earlier_model_owners"
branch_labels = None
depends_on = None

job = sa.table(
    "job",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("owner", sa.String),
    sa.column("model_name", sa.String),
    sa.column("spec", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
sweep = sa.table(
    "sweep",
    sa.column("id", sa.String),
    sa.column("owner", sa.String),
    sa.column("request", sa.JSON),
    sa.column("base_spec", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
model_owner = sa.table(
    "model_owner",
    sa.column("name", sa.String),
    sa.column("owner", sa.String),
    sa.column("group", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads pairs the escapes of a character beyond U+FFFF


def upgrade() -> None:
    connection = op.get_bind()
    _claim_unowned_names(connection)
    for table, column in ((job, "spec"), (sweep, "request"), (sweep, "base_spec")):
        _replace_lone_surrogates(connection, table, column)


def _claim_unowned_names(connection: sa.Connection) -> None:
    claimed: set[str] = set(connection.execute(sa.select(model_owner.c.name)).scalars())
    trained = connection.execute(
        sa.select(job.c.created_at, job.c.model_name, job.c.owner).where(
            job.c.kind == "train", job.c.model_name.is_not(None)
        )
    )
    candidates: list[tuple[Any, str, str, str | None]] = [
        (at, str(name), str(owner), None) for at, name, owner in trained.tuples()
    ]
    sweeps = connection.execute(sa.select(sweep.c.created_at, sweep.c.owner, sweep.c.request)).tuples()
    for at, owner, request in sweeps:
        base: dict[str, Any] = dict(request or {}).get("base") or {}
        if base.get("model_name"):
            candidates.append((at, str(base["model_name"]), str(owner), base.get("model_group")))
    first: dict[str, dict[str, Any]] = {}
    for at, name, owner, group in sorted(candidates, key=lambda c: (c[0] is None, c[0] or 0)):
        if name not in claimed and name not in first:
            first[name] = {"name": name, "owner": owner, "group": group, "created_at": at or datetime.now(UTC)}
    if first:
        op.bulk_insert(model_owner, list(first.values()))


def _replace_lone_surrogates(connection: sa.Connection, table: sa.TableClause, column: str) -> None:
    # SQLAlchemy writes JSON with ASCII escapes: only a row with a "\ud..." escape can hold one
    suspects = connection.execute(
        sa.select(table.c.id, table.c[column]).where(
            sa.cast(table.c[column], sa.Text).contains("\\ud", autoescape=True)
        )
    ).all()
    for row_id, value in suspects:
        cleaned = _cleaned(value)
        if cleaned != value:
            connection.execute(table.update().where(table.c.id == row_id).values({column: cleaned}))


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    if isinstance(value, dict):
        return {_cleaned(key): _cleaned(item) for key, item in value.items()}
    return value


def downgrade() -> None:
    pass  # the owners stay (which rows this added is not recorded, and they are right), as do the repairs
