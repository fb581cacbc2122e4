"""Shared fixtures. Database tests run against SQLite and PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.db.scratch import postgres_available, scratch_database


@pytest.fixture(scope="session")
def postgres_server() -> bool:
    if not postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (scripts/test starts it)")
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        upgrade(url)
        yield url
        return
    request.getfixturevalue("postgres_server")
    url, drop = scratch_database("ascl_test")
    upgrade(url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def make_token(sessions, subject: str = "admin", role: str = "admin", groups: tuple[str, ...] = ()) -> str:
    """A real API token, stored hashed like any other."""
    from service.auth import tokens
    from service.auth.principal import Role
    from service.db import session_scope

    with session_scope(sessions) as session:
        _, token = tokens.create(
            session,
            tokens.NewToken(subject=subject, role=Role(role), name="test", created_by="tests", groups=groups),
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def serving(app) -> Iterator[int]:
    """The app served by uvicorn on a free local port, in a thread, for tests over real HTTP."""
    import threading
    import time

    import uvicorn

    from control.ports import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
