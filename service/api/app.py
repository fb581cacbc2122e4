"""The FastAPI application factory. Everything it uses is injected, nothing is module-level."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from service.api import internal, jobs, logs, models, ops, queues, service_limits, sweeps, tokens
from service.api.auth import Authenticator
from service.api.errors import ERROR_RESPONSES, install_error_handlers
from service.api.limits import BodySizeLimit, Slots
from service.api.pages import install_pages
from service.api.queue_view import QueueView
from service.api.request_metrics import CountRequests, RequestCounts
from service.api.security_headers import SecurityHeaders
from service.auth.oidc import OidcConfig, OidcVerifier
from service.auth.tokens import TokenVerifier
from service.cluster import ClusterView, StaticCluster
from service.db.group_commit import GroupCommit
from service.jobs.errors import JobError
from service.metrics import Metric
from service.registry import ModelRegistry, NoRegistry
from service.settings import ServiceSettings


def create_app(
    sessions: sessionmaker[Session],
    *,
    settings: ServiceSettings | None = None,
    cluster: ClusterView | None = None,
    registry: ModelRegistry | None = None,
    wake_dispatcher: Callable[[], None] = lambda: None,
    mlflow_ui_url: str | None = None,
    mlflow_ready: Callable[[], bool] = lambda: True,
    dispatcher_metrics: Callable[[], list[Metric]] = list,
) -> FastAPI:
    settings = settings or ServiceSettings()
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
        servers=[{"url": "."}],  # "Try it out" calls relative to the docs page: right behind a path prefix too
        docs_url=None,  # served from vendored files by service.api.pages: FastAPI's load from a CDN
        redoc_url=None,
    )
    app.state.sessions = sessions
    app.state.settings = settings
    app.state.submissions = submissions
    app.state.cluster = cluster or StaticCluster()
    app.state.registry = registry or NoRegistry()
    app.state.wake_dispatcher = wake_dispatcher
    app.state.mlflow_ui_url = mlflow_ui_url
    app.state.mlflow_ready = mlflow_ready
    app.state.dispatcher_metrics = dispatcher_metrics
    app.state.stream_slots = Slots(
        "open log streams", per_user=settings.log_streams_per_user, total=settings.log_streams_total
    )
    app.state.requests_in_progress = Slots("requests in progress", per_user=settings.requests_per_user)
    app.state.queue_view = QueueView(settings.scheduling_policy)
    app.state.authenticator = Authenticator(
        TokenVerifier(sessions, ttl_s=settings.token_cache_s), _oidc(settings), writer=submissions
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, deadline_s=settings.body_deadline_s)
    app.state.request_counts = RequestCounts()
    app.add_middleware(SecurityHeaders)
    app.add_middleware(CountRequests, counts=app.state.request_counts)  # outermost: counts 413s too
    for router, tag in (
        (jobs.router, "jobs"),
        (logs.router, "jobs"),
        (sweeps.router, "sweeps"),
        (models.router, "models"),
        (queues.router, "queues"),
        (tokens.router, "identity"),
        (service_limits.router, "identity"),
        (internal.router, "workers"),
    ):
        app.include_router(router, prefix="/api/v1", tags=[tag], responses=ERROR_RESPONSES)
        app.state.request_counts.name_routes(router, "/api/v1")
    app.include_router(ops.router, tags=["operations"])
    app.state.request_counts.name_routes(ops.router)
    install_pages(app, app.state.request_counts)
    return app


def _oidc(settings: ServiceSettings) -> OidcVerifier | None:
    if settings.oidc_issuer is None:
        return None
    if settings.oidc_audience is None:
        raise ValueError("ASCL_OIDC_ISSUER is set: set ASCL_OIDC_AUDIENCE too")
    return OidcVerifier(
        OidcConfig(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            subject_claim=settings.oidc_subject_claim,
            roles_claim=settings.oidc_roles_claim,
            groups_claim=settings.oidc_groups_claim,
        )
    )
