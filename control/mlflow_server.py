"""The embedded default's MLflow server (UI, tracking and artifact proxy) on a local SQLite store,
so workers log over HTTP and need no storage credentials. It dies with `ascl serve`."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import httpx

from control.children import FateShared
from service.settings import ServiceSettings


@dataclass
class MlflowServer:
    url: str
    process: FateShared | None  # None: a tracking server we did not start

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def start_mlflow_server(settings: ServiceSettings, port: int, *, timeout_s: float = 120) -> MlflowServer:
    artifacts = settings.data_dir.resolve() / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / "mlflow-server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", settings.resolved_mlflow_uri]
    command += ["--artifacts-destination", artifacts.as_uri(), "--serve-artifacts"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # its job runner serves GenAI features (scorers, trace roll-ups) the service never uses: one process less
    process = FateShared(command, log=log, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"the MLflow server exited; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return MlflowServer(url, process)
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.stop()
    raise RuntimeError(f"the MLflow server did not answer /health within {timeout_s:.0f} s")
