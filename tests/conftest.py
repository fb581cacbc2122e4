"""Shared fixtures. Database tests run against SQLite and PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.db.scratch import postgres_available, scratch_database


@pytest.fixture(scope="session")
def postgres_server() -> bool:
    if not postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (scripts/test starts it)")
    return True


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite file migrated once per session, which each test copies (hundreds of tests would
    otherwise each run every migration)."""
    path = tmp_path_factory.mktemp("migrated") / "jobs.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server) -> Iterator[str]:
    """A PostgreSQL database migrated once per session: the template each test's database copies."""
    url, drop = scratch_database("ascl_template")
    upgrade(url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        path = tmp_path / "jobs.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    url, drop = scratch_database("ascl_test", template=request.getfixturevalue("migrated_postgres"))
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def new_mlflow_store(tmp_path_factory) -> Callable[[Path], str]:
    """Makes an empty MLflow tracking store (SQLite) in a directory, with its default experiment's
    artifacts in directory/artifacts/0 (as MLflow would), and returns its URI: a copy of one
    created once per session (MLflow creating its tables takes about a second, and dozens of tests
    each want a new store)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{template}", (template.parent / "artifacts").as_uri()).engine.dispose()

    def new(directory: Path) -> str:
        path = directory / "mlflow.db"
        shutil.copyfile(template, path)
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE experiments SET artifact_location = ?", ((directory / "artifacts" / "0").as_uri(),))
        return f"sqlite:///{path}"

    return new


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
def serving(app, *, root_path: str = "") -> Iterator[int]:
    """The app served by uvicorn on a free local port, in a thread, for tests over real HTTP
    (`root_path`: as behind a proxy that serves it under that prefix and strips it)."""
    import threading
    import time

    import uvicorn

    from control.ports import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", root_path=root_path))
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
