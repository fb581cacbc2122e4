"""Run the Alembic migrations (the schema's only source) up to head.

Our revisions are recorded in `ascl_alembic_version`, not Alembic's default `alembic_version`:
Optuna keeps sweeps' studies in the same database and records its own schema revision in
`alembic_version`, so the two must not share that table. A database migrated before this rename
has its version row moved across first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from service.db import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "ascl_alembic_version"
OURS = ("0001", "0002", "0003", "0004")  # the revisions written to the default table before the rename


def ours(_: Any, _name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's include_object: tables only the database has (Optuna's) are not ours to drop."""
    return not (type_ == "table" and reflected and compare_to is None)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    _move_version_row(url)
    command.upgrade(alembic_config(url), "head")


def _move_version_row(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            if VERSION_TABLE in tables or "alembic_version" not in tables:
                return
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
            if revision not in OURS:
                return  # Optuna's, or a stranger's: leave it
            connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:revision)"), {"revision": revision})
            connection.execute(text("DELETE FROM alembic_version"))
    finally:
        engine.dispose()


if __name__ == "__main__":  # the one-shot `migrate` step of a deployment: python -m service.db.migrate
    from service.settings import ServiceSettings

    upgrade(ServiceSettings().resolved_database_url)
