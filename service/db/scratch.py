"""Scratch PostgreSQL databases for the test suite and the benchmarks (default 127.0.0.1:5432, trust auth;
set ASCL_SCRATCH_POSTGRES_URL to use another server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, make_url, text

POSTGRES_ADMIN_URL = os.environ.get("ASCL_SCRATCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # any failure to connect means "not available"
        return False


def scratch_database(prefix: str, *, template: str | None = None) -> tuple[str, Callable[[], None]]:
    """A new database, empty or a copy of the database at `template` (a URL from this function, with
    no connection open), and the function that drops it (even with open connections)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = "" if template is None else f' TEMPLATE "{make_url(template).database}"'
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop
