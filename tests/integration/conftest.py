"""A running service for end-to-end tests: migrations, a real local Ray, a real MLflow store, the
dispatcher and the API served by uvicorn on a local port (workers call it over real HTTP)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from control.serve import Stack, running_stack
from service.client import AsclClient
from service.db.scratch import scratch_database
from service.settings import ServiceSettings


@dataclass
class ApiServer:
    """The API under uvicorn in a thread; a test may stop it and serve a new one (an API restart)."""

    server: uvicorn.Server
    thread: threading.Thread

    @classmethod
    def start(cls, stack: Stack, *, restart: bool = False) -> ApiServer:
        """On the stack's bound socket; a restart binds its port again (the first server closed it)."""
        config = uvicorn.Config(stack.app(), host=stack.settings.host, port=stack.settings.port, log_level="warning")
        server = uvicorn.Server(config)
        sockets = None if restart else stack.listeners
        thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        return cls(server, thread)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Running:
    stack: Stack
    client: AsclClient
    settings: ServiceSettings
    api: ApiServer


def start_service(
    data_dir: Path, database: str, *, dispatcher: bool = True, mlflow_server: bool = False, **overrides: object
):
    """A context manager yielding Running; database is 'sqlite' or 'postgresql'. MLflow is a local
    store, or with `mlflow_server` the embedded tracking server (workers then log over HTTP).
    `overrides` are further settings, e.g. ray_address to join a cluster instead of starting one, or
    local_ray_num_cpus. The standard evaluation of registered versions is off unless asked for
    (`auto_eval=True`): it would compete for the two CPUs with what the other tests time."""
    import contextlib

    @contextlib.contextmanager
    def manager():
        drop = None
        if database == "postgresql":
            url, drop = scratch_database("ascl_e2e")
        else:
            url = f"sqlite:///{data_dir / 'jobs.db'}"
        defaults = {
            "data_dir": data_dir,
            "config_dir": data_dir / "client-config",
            "database_url": url,
            "mlflow_tracking_uri": None if mlflow_server else f"sqlite:///{data_dir / 'mlflow.db'}",
            "port": 0,
            "local_ray_num_cpus": 2,
            "local_ray_num_gpus": 1,  # a logical GPU: jobs must see exactly the devices they reserved
            "poll_interval_s": 0.3,
            "heartbeat_interval_s": 1.0,
            "heartbeat_timeout_s": 120.0,
            "claim_lease_s": 1.0,
            "repair_interval_s": 5.0,
            "dispatcher": dispatcher,
            "auto_eval": False,
        }
        settings = ServiceSettings(**(defaults | overrides))
        try:
            with running_stack(settings) as stack:
                running = Running(
                    stack,
                    AsclClient(stack.settings.api_url, token=stack.admin_token),
                    stack.settings,
                    ApiServer.start(stack),
                )
                try:
                    yield running
                finally:
                    running.api.stop()
        finally:
            if drop is not None:
                drop()

    return manager()


def summed(cluster) -> tuple[dict[str, float], dict[str, float]]:
    """The cluster's free and total resources, summed over its nodes."""
    nodes = cluster.nodes()
    free = {key: sum(f.get(key, 0.0) for f, _ in nodes) for key in ("CPU", "GPU")}
    total = {key: sum(t.get(key, 0.0) for _, t in nodes) for key in ("CPU", "GPU")}
    return free, total


def wait_for(predicate, *, timeout_s: float = 300, poll_s: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
