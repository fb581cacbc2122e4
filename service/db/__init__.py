"""Database engine and sessions. SQLite gets WAL, a busy timeout and foreign keys on every connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "ascl_read_only"  # an execution option: begin a deferred (read) transaction on SQLite


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # A pool as large as FastAPI's 40-thread pool: waiting for SQLite's one writer happens in its
        # busy handler, not as a pool timeout.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=40, max_overflow=10
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):  # type: ignore[no-untyped-def]
            connection.isolation_level = None  # let SQLAlchemy's "begin" below open transactions
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):  # type: ignore[no-untyped-def]
            # A deferred transaction that later writes cannot wait for the lock (SQLITE_BUSY at once,
            # "database is locked"); taking the write lock up front makes it wait in busy_timeout.
            # Reads (read_scope) begin deferred: in WAL mode they never wait for a writer.
            read_only = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # As large as the thread pool too: connections beyond pool_size are opened and closed per
    # checkout, and a PostgreSQL connection is a forked backend (measured: a third of POST's CPU).
    return create_engine(url, pool_pre_ping=True, pool_size=40, max_overflow=10)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that only reads: on SQLite it takes no write lock, so it never queues behind
    writers (submissions, the dispatcher). Writing inside it is a bug."""
    session = factory()
    try:
        session.connection(execution_options=cast(Any, {READ_ONLY: True}))  # our own option: not in the TypedDict
        yield session
    finally:
        session.close()  # ends the transaction; what was read stays readable (close does not expire)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
