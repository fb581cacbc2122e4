"""A standalone API process (`uvicorn --factory control.asgi:create_app_from_env`), configured from
ASCL_* environment variables: the production shape, where the dispatcher runs in its own process
(`python -m control`). The API needs no torch; it reads the model registry (MLflow) to resolve eval
jobs at submission and, given ASCL_RAY_ADDRESS, the cluster's capacity (to check submissions) and
its running attempts' logs (without it, logs are the tails kept when attempts end). It runs pending
migrations first: one process at a time on a host
(`uvicorn --workers N` starts N at once, and two creating the same tables fail, measured with the
embedded MLflow store's); across hosts, run `python -m service.db.migrate` once before the API."""

from __future__ import annotations

import fcntl

from fastapi import FastAPI

from control.heap import freeze_startup_heap
from control.ray_cluster import RayCluster
from control.wiring import api_app, tracker_for, ui_url
from service.db.migrate import upgrade
from service.settings import ServiceSettings


def create_app_from_env() -> FastAPI:
    settings = ServiceSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".api-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        upgrade(settings.resolved_database_url)
        tracker = tracker_for(settings, settings.resolved_mlflow_uri)  # a local store creates its tables
    cluster = (
        RayCluster(address=settings.ray_address, dashboard_url=settings.ray_dashboard_url, wait_for_capacity=False)
        if settings.ray_address
        else None
    )
    app = api_app(
        settings, tracker=tracker, cluster=cluster, mlflow_ui_url=ui_url(settings, settings.resolved_mlflow_uri)
    )
    freeze_startup_heap()
    return app
