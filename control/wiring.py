"""How the processes are put together, in one place: the control plane (Ray cluster client, MLflow
tracker, dispatcher) and the API app wired to it. `ascl serve`, `python -m control` and the
standalone API factory all build from here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from control.dispatcher import Dispatcher
from control.ray_cluster import RayCluster
from control.tracking import Tracker
from service.api.app import create_app
from service.cluster import ClusterView, StaticCluster
from service.db import make_engine, make_sessionmaker, session_scope
from service.jobs import queue_config
from service.metrics import Metric
from service.settings import ServiceSettings


@dataclass
class ControlPlane:
    sessions: sessionmaker[Session]
    cluster: RayCluster
    tracker: Tracker
    dispatcher: Dispatcher


def tracker_for(settings: ServiceSettings, tracking_uri: str) -> Tracker:
    # a local store needs to be told where artifacts go; a tracking server decides that itself
    local_store = not tracking_uri.startswith(("http://", "https://"))
    return Tracker(tracking_uri, artifact_root=settings.mlflow_artifact_root if local_store else None)


def apply_queues_file(settings: ServiceSettings, sessions: sessionmaker[Session]) -> None:
    """The operator's queues file, if any, upserted into the database (ASCL_QUEUES_FILE)."""
    if settings.queues_file is None:
        return
    with session_scope(sessions) as session:
        for name, spec in queue_config.load_file(settings.queues_file).items():
            queue_config.upsert(session, name, spec, actor=f"file {settings.queues_file.name}")


def ui_url(settings: ServiceSettings, tracking_uri: str) -> str | None:
    """Where users open MLflow: the configured UI URL, else a tracking server's own URL."""
    return settings.mlflow_ui_url or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)


def build_control_plane(
    settings: ServiceSettings, *, ray_address: str, tracker: Tracker, dashboard_url: str | None = None
) -> ControlPlane:
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    cluster = RayCluster(address=ray_address, dashboard_url=dashboard_url or settings.ray_dashboard_url)
    return ControlPlane(sessions, cluster, tracker, Dispatcher(sessions, cluster, tracker, settings))


def api_app(
    settings: ServiceSettings,
    *,
    tracker: Tracker,
    cluster: ClusterView | None = None,
    wake_dispatcher: Callable[[], None] = lambda: None,
    mlflow_ui_url: str | None = None,
    dispatcher_metrics: Callable[[], list[Metric]] = list,
) -> FastAPI:
    return create_app(
        make_sessionmaker(make_engine(settings.resolved_database_url)),
        settings=settings,
        cluster=cluster or StaticCluster(),
        registry=tracker,
        wake_dispatcher=wake_dispatcher,
        mlflow_ui_url=mlflow_ui_url,
        mlflow_ready=tracker.ready,
        dispatcher_metrics=dispatcher_metrics,
    )
