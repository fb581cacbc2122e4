"""`python -m workers`: the dispatcher/monitor as its own process (production), next to API
processes started with `uvicorn --factory service.asgi:create_app_from_env`."""

from __future__ import annotations

import logging
import signal
import threading

from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.settings import ServiceSettings
from workers.dispatcher import Dispatcher, DispatchSettings
from workers.ray_cluster import RayCluster
from workers.tracking import Tracker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ServiceSettings()
    upgrade(settings.resolved_database_url)
    cluster = RayCluster(address=settings.ray_address, dashboard_url=settings.ray_dashboard_url)
    tracker = Tracker(
        settings.resolved_mlflow_uri,
        artifact_root=None if settings.mlflow_tracking_uri else settings.mlflow_artifact_root,
    )
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    dispatcher = Dispatcher(sessions, cluster, tracker, DispatchSettings.from_service(settings))
    stop, wake = threading.Event(), threading.Event()

    def shut_down(*_: object) -> None:
        stop.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    dispatcher.run(stop, wake, interval_s=settings.poll_interval_s)
    cluster.shutdown()


if __name__ == "__main__":
    main()
