"""A standalone API process (`uvicorn --factory control.asgi:create_app_from_env`), configured from
ASCL_* environment variables: the production shape, where the dispatcher runs in its own process
(`python -m control`). The API needs neither Ray nor torch; it reads the model registry (MLflow) to
resolve eval jobs at submission. It runs pending migrations first."""

from __future__ import annotations

from fastapi import FastAPI

from control.heap import freeze_startup_heap
from control.wiring import api_app, tracker_for, ui_url
from service.db.migrate import upgrade
from service.settings import ServiceSettings


def create_app_from_env() -> FastAPI:
    settings = ServiceSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    tracker = tracker_for(settings, settings.resolved_mlflow_uri)
    app = api_app(settings, tracker=tracker, mlflow_ui_url=ui_url(settings, settings.resolved_mlflow_uri))
    freeze_startup_heap()
    return app
