"""The embedded default's MLflow server (UI, tracking and artifact proxy) on a local SQLite store,
so workers log over HTTP and need no storage credentials. It dies with `ascl serve`."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from control.children import ChildDidNotStart, FateShared, answers, await_start
from control.ports import free_port
from service.settings import ServiceSettings

START_ATTEMPTS = 3
PORT_TAKEN = b"address already in use"  # uvicorn's words when it cannot bind; `mlflow server` then exits 0

logger = logging.getLogger(__name__)


@dataclass
class MlflowServer:
    url: str
    process: FateShared | None  # None: a tracking server we did not start

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class MlflowServerDidNotStart(ChildDidNotStart):
    """The embedded MLflow server would not start; the message names its log."""


def start_mlflow_server(
    settings: ServiceSettings, *, timeout_s: float = 120, abandoned: threading.Event | None = None
) -> MlflowServer:
    """On settings.mlflow_port, else on a free port: a server that finds the free port taken (Ray's
    processes, starting beside it, bind free ports too) starts again on another, up to
    START_ATTEMPTS starts in all. `timeout_s` bounds each start; setting `abandoned` gives it up
    (StartAbandoned), the server stopped."""
    log = settings.data_dir / "mlflow-server.log"
    for attempt in range(1, START_ATTEMPTS + 1):
        port = settings.mlflow_port or free_port()
        if (server := _start(settings, port, log=log, timeout_s=timeout_s, abandoned=abandoned)) is not None:
            return server
        if settings.mlflow_port:  # the port asked for: another start would find it taken too
            raise MlflowServerDidNotStart(f"the MLflow server's port {port} (ASCL_MLFLOW_PORT) is taken; see {log}")
        logger.warning("the MLflow server's free port was taken (try %d of %d); see %s", attempt, START_ATTEMPTS, log)
    raise MlflowServerDidNotStart(
        f"the MLflow server's free port was taken as it started, {START_ATTEMPTS} times; see {log}"
    )


def _start(
    settings: ServiceSettings, port: int, *, log: Path, timeout_s: float, abandoned: threading.Event | None
) -> MlflowServer | None:
    """The started server, or None if its port was taken."""
    artifacts = settings.data_dir.resolve() / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", settings.resolved_mlflow_uri]
    command += ["--artifacts-destination", artifacts.as_uri(), "--serve-artifacts"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # its job runner serves GenAI features (scorers, trace roll-ups) the service never uses: one process less
    process = FateShared(command, log=log, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    # what uvicorn says once it has bound the port: until then an answer there may come from whatever
    # holds the port (another MLflow, Ray's metrics exporter answers 200 on any path)
    bound = f"Uvicorn running on {url}".encode()
    try:
        started = await_start(
            process,
            lambda: bound in process.output() and answers(f"{url}/health"),
            timeout_s=timeout_s,
            abandoned=abandoned,
        )
    except TimeoutError:
        raise MlflowServerDidNotStart(
            f"the MLflow server did not answer /health within {timeout_s:.0f} s; see {log}"
        ) from None
    if started:
        return MlflowServer(url, process)
    if PORT_TAKEN in process.output():
        return None
    raise MlflowServerDidNotStart(f"the MLflow server exited while starting; see {log}")
