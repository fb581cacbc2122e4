"""The migrations are the schema's only source: on SQLite and PostgreSQL, migrating to head gives
exactly the tables the models declare, and every migration steps down again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.db import make_engine
from service.db.migrate import alembic_config, upgrade
from service.db.models import Base


def _differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))
    finally:
        engine.dispose()


def test_head_matches_the_models(database_url):
    assert _differences(database_url) == []


def test_every_migration_steps_down_and_up_again(database_url):
    command.downgrade(alembic_config(database_url), "base")
    upgrade(database_url)
    assert _differences(database_url) == []
