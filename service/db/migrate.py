"""Run the Alembic migrations (the schema's only source) up to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


if __name__ == "__main__":  # the one-shot `migrate` step of a deployment: python -m service.db.migrate
    from service.settings import ServiceSettings

    upgrade(ServiceSettings().resolved_database_url)
