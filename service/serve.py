"""`ascl serve`: the whole service in one process on the embedded defaults — migrations, a local Ray
(with its job server), the MLflow tracking server and UI beside the API, the dispatcher/monitor
in a background thread, and the API under uvicorn. Only URLs change for production."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from service.api.app import create_app
from service.db import make_engine, make_sessionmaker
from service.db.migrate import upgrade
from service.settings import ServiceSettings
from workers.dispatcher import Dispatcher, DispatchSettings
from workers.ray_cluster import RayCluster
from workers.tracking import Tracker

logger = logging.getLogger(__name__)


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_mlflow_server(settings: ServiceSettings, port: int) -> MlflowServer:
    """The MLflow server (UI + tracking + artifact proxy) on a local SQLite store, so workers log
    over HTTP and need no storage credentials."""
    artifacts = settings.data_dir.resolve() / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = (settings.data_dir / "mlflow-server.log").open("ab")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.resolved_mlflow_uri,
        "--artifacts-destination",
        artifacts.as_uri(),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the MLflow server exited; see {settings.data_dir / 'mlflow-server.log'}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return MlflowServer(url, process)
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError("the MLflow server did not answer /health within 120 s")


def free_port(preferred: int = 0) -> int:
    """`preferred` if it is free, else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """Everything `serve` starts, for the CLI and for end-to-end tests."""

    settings: ServiceSettings
    cluster: RayCluster
    tracker: Tracker
    dispatcher: Dispatcher
    mlflow: MlflowServer
    stop: threading.Event
    wake: threading.Event
    thread: threading.Thread | None = None

    def app(self) -> FastAPI:
        engine = make_engine(self.settings.resolved_database_url)
        return create_app(
            make_sessionmaker(engine),
            cluster=self.cluster,
            wake_dispatcher=self.wake.set,
            mlflow_ui_url=self.mlflow.url if self.mlflow.process else None,
            mlflow_ready=self.tracker.ready,
            dispatcher_metrics=self.dispatcher.metrics,
        )


@contextmanager
def running_stack(settings: ServiceSettings, *, mlflow_port: int | None = None) -> Iterator[Stack]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if settings.mlflow_tracking_uri is None:
        mlflow = start_mlflow_server(settings, mlflow_port or free_port(5000))
        tracking_uri = mlflow.url
    else:
        mlflow = MlflowServer(settings.mlflow_tracking_uri, None)
        tracking_uri = settings.mlflow_tracking_uri
    cluster = RayCluster(
        address=settings.ray_address,
        dashboard_url=settings.ray_dashboard_url,
        num_cpus=settings.local_ray_num_cpus,
        num_gpus=settings.local_ray_num_gpus,
    )
    tracker = Tracker(tracking_uri, artifact_root=None if mlflow.process else settings.mlflow_artifact_root)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    dispatcher = Dispatcher(sessions, cluster, tracker, DispatchSettings.from_service(settings))
    stack = Stack(settings, cluster, tracker, dispatcher, mlflow, threading.Event(), threading.Event())
    if settings.dispatcher:
        stack.thread = threading.Thread(
            target=dispatcher.run,
            args=(stack.stop, stack.wake),
            kwargs={"interval_s": settings.poll_interval_s},
            name="dispatcher",
            daemon=True,
        )
        stack.thread.start()
    try:
        yield stack
    finally:
        stack.stop.set()
        stack.wake.set()
        if stack.thread is not None:
            stack.thread.join(timeout=30)
        cluster.shutdown()
        mlflow.stop()


def serve(settings: ServiceSettings, *, demo: bool = False, exit_after_demo: bool = False) -> int:
    with running_stack(settings) as stack:
        server = uvicorn.Server(uvicorn.Config(stack.app(), host=settings.host, port=settings.port, log_level="info"))
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                return 1
            time.sleep(0.1)
        print(f"API:        {settings.api_url}/docs", flush=True)
        print(f"MLflow UI:  {stack.mlflow.url}", flush=True)
        print(f"Ray jobs:   {stack.cluster.dashboard_url}", flush=True)
        status = 0
        try:
            if demo:
                from service.demo import run_demo

                status = run_demo(settings.api_url, stack.mlflow.url)
                if exit_after_demo:
                    return status
            thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        return status
