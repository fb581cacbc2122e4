"""`python -m control`: the dispatcher/monitor as its own process (production), next to API
processes started with `uvicorn --factory control.asgi:create_app_from_env`."""

from __future__ import annotations

import logging
import signal
import threading

from control.wiring import apply_queues_file, build_control_plane, tracker_for
from service.db.migrate import upgrade
from service.settings import ServiceSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ServiceSettings()
    if settings.ray_address is None:
        raise SystemExit("python -m control joins a Ray cluster: set ASCL_RAY_ADDRESS")
    upgrade(settings.resolved_database_url)
    tracker = tracker_for(settings, settings.resolved_mlflow_uri)
    plane = build_control_plane(settings, ray_address=settings.ray_address, tracker=tracker)
    apply_queues_file(settings, plane.sessions)
    stop, wake = threading.Event(), threading.Event()

    def shut_down(*_: object) -> None:
        stop.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut_down)
    plane.dispatcher.run(stop, wake, interval_s=settings.poll_interval_s)


if __name__ == "__main__":
    main()
