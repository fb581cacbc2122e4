"""Request-scoped dependencies.

Each endpoint opens its unit of work with `with session_scope(sessions)` and commits it before it
returns, inside its own threadpool call. A yield-dependency that commits afterwards deadlocks
under load: FastAPI needs another threadpool call (response serialisation, then the teardown)
before the commit, while every pool thread may be an endpoint waiting for SQLite's write lock
that this uncommitted request holds. Measured with bench/bench_service.py at 50 clients.
`POST /jobs` is the exception: it hands its unit of work to the app's group commit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker


def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


Sessions = Annotated[sessionmaker[Session], Depends(get_sessions)]
