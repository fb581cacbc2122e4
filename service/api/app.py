"""The FastAPI application factory. Everything it uses is injected, nothing is module-level."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from service.api import internal, jobs, ops
from service.api.errors import install_error_handlers
from service.cluster import ClusterView, StaticCluster
from service.db.group_commit import GroupCommit
from service.jobs.errors import JobError


def create_app(
    sessions: sessionmaker[Session],
    *,
    cluster: ClusterView | None = None,
    wake_dispatcher: Callable[[], None] = lambda: None,
    mlflow_ui_url: str | None = None,
    mlflow_ready: Callable[[], bool] = lambda: True,
    dispatcher_metrics: Callable[[], dict[str, float]] = dict,
) -> FastAPI:
    submissions = GroupCommit(sessions, rejections=(JobError,))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        submissions.close()

    app = FastAPI(
        lifespan=lifespan,
        title="ASCL training service",
        version="0.1.0",
        description="Adversarially robust training and evaluation jobs (ASCL, arXiv 2101.10027).",
    )
    app.state.sessions = sessions
    app.state.submissions = submissions
    app.state.cluster = cluster or StaticCluster()
    app.state.wake_dispatcher = wake_dispatcher
    app.state.mlflow_ui_url = mlflow_ui_url
    app.state.mlflow_ready = mlflow_ready
    app.state.dispatcher_metrics = dispatcher_metrics
    install_error_handlers(app)
    app.include_router(jobs.router, prefix="/api/v1", tags=["jobs"])
    app.include_router(internal.router, prefix="/api/v1", tags=["workers"])
    app.include_router(ops.router, tags=["operations"])
    return app
