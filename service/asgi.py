"""A standalone API process (`uvicorn --factory service.asgi:create_app_from_env`), configured from
ASCL_* environment variables: the production shape where the dispatcher runs in its own process
(`python -m workers`) and the API needs neither Ray nor torch. It runs pending migrations first."""

from __future__ import annotations

from fastapi import FastAPI

from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.settings import ServiceSettings


def create_app_from_env() -> FastAPI:
    settings = ServiceSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    return create_app(make_sessionmaker(engine), cluster=StaticCluster())
