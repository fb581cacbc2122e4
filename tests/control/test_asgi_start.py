"""Several API processes starting at once on one host (`uvicorn --workers N`) on a fresh data
directory: each runs the migrations and creates the local MLflow store in turn (at once, one died on
"duplicate column name")."""

from __future__ import annotations

import os
import subprocess
import sys

START = "from control.asgi import create_app_from_env; create_app_from_env()"


def test_api_processes_starting_together_on_a_fresh_data_directory_all_start(tmp_path):
    env = {**os.environ, "ASCL_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}", "ASCL_DATA_DIR": str(tmp_path)}
    env.pop("ASCL_MLFLOW_TRACKING_URI", None)  # the embedded local store, created by the first to start
    starting = [
        subprocess.Popen([sys.executable, "-c", START], env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    errors = [process.communicate(timeout=300)[1] for process in starting]
    failures = [error[-2000:] for process, error in zip(starting, errors, strict=True) if process.returncode]
    assert failures == []


def test_an_api_process_starts_before_the_ray_head_and_says_ray_is_not_ready(tmp_path, monkeypatch):
    """The production API reads capacity and logs from the cluster it is given; it starts, serves and
    answers /readyz while the head is still down (compose starts it without waiting for Ray)."""
    from fastapi.testclient import TestClient

    from control.asgi import create_app_from_env
    from control.ports import free_port

    monkeypatch.setenv("ASCL_DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    monkeypatch.setenv("ASCL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ASCL_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ASCL_RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("ASCL_RAY_DASHBOARD_URL", f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app_from_env()) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["ray"] is False
    assert ready.json()["checks"]["database"] is True
