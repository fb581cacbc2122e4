"""`ascl serve` as a real process: the README's first command (`ascl serve --demo`, after its install
step) goes from a REST submission to a registered model on the embedded defaults while a second
service runs beside it on the same host (every port they start is free, none fixed); a service whose
Ray head dies stops, and a SIGKILLed `ascl serve` leaves no process behind (its MLflow server, its Ray
head and whatever those started die with it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.client import AsclClient
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def serve(home: Path, *options: str) -> subprocess.Popen[bytes]:
    """`ascl serve` on any free port (chosen and held by the process itself: none to race for)."""
    home.mkdir()
    command = [sys.executable, "-m", "ascl.cli", "serve", *options, "--data-dir", str(home / "data"), "--port", "0"]
    with (home / "serve.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=home)


def ready_url(process: subprocess.Popen[bytes], log: Path) -> str | None:
    """The API's address, once the service says it and answers /readyz there."""
    text = log.read_text()
    assert process.poll() is None, text[-3000:]
    found = re.search(r"API:\s+(\S+)/docs", text)
    try:
        return found[1] if found and httpx.get(f"{found[1]}/readyz", timeout=5).status_code == 200 else None
    except httpx.TransportError:
        return None


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def demo_summary(log: Path) -> dict | None:
    """The JSON summary `ascl serve --demo` prints once its job has ended."""
    text = log.read_text()
    end = text.rfind("\n}")
    return json.loads(text[text.rindex("\n{", 0, end) + 1 : end + 2]) if end >= 0 else None


def test_the_demo_beside_a_second_service_and_neither_leaves_a_process_behind_after_sigkill(tmp_path):
    homes = [tmp_path / "demo", tmp_path / "two"]
    started = [serve(homes[0], "--demo"), serve(homes[1])]
    processes: list[psutil.Process] = []
    ray_dirs: set[Path] = set()
    try:
        urls = [
            wait_for(lambda p=process, h=home: ready_url(p, h / "serve.log"), timeout_s=240, what=f"{home.name} ready")
            for process, home in zip(started, homes, strict=True)
        ]
        assert len(set(urls)) == 2
        logs = [(home / "serve.log").read_text() for home in homes]
        ray_urls = {re.search(r"Ray jobs:\s+(\S+)", log)[1] for log in logs}  # type: ignore[index]
        mlflow_urls = {re.search(r"MLflow UI:\s+(\S+)", log)[1] for log in logs}  # type: ignore[index]
        assert len(ray_urls) == 2
        assert all("API:" in log for log in logs)
        assert len(mlflow_urls) == 2
        # a job in each reaches its own Ray (through its own job agent) and runs there: the demo's job,
        # and in the second a user error in the worker (not a refused submission), the quickest proof
        url, home = urls[1], homes[1]
        client = AsclClient(url, token=(home / "data" / "admin-token").read_text().strip())
        missing = {"data.dataset": "mnist", "data.data_dir": str(home / "missing"), "train.epochs": 1}
        done = client.wait(client.submit({"preset": "digits-pgdat", "overrides": missing})["id"], timeout_s=240)
        assert done["status"] == "FAILED"
        assert done["error_class"] == "USER_ERROR", done["error_message"]
        demo_log = homes[0] / "serve.log"
        summary = wait_for(lambda: demo_summary(demo_log), timeout_s=420, what="the demo's summary")
        assert summary["status"] == "SUCCEEDED", demo_log.read_text()[-3000:]
        assert summary["registered_model"] == "models:/digits-ascl-demo/1"
        assert summary["pgd_acc"] > 0.1
        assert "demo: " in demo_log.read_text()  # its progress, printed while it waits
        assert (homes[0] / "data" / "jobs.db").exists()
        assert (homes[0] / "data" / "mlflow.db").exists()
        processes = [p for process in started for p in tree(process.pid)]
        assert any("mlflow" in " ".join(p.cmdline()) for p in processes)
        assert not any("mlflow.server.jobs" in " ".join(p.cmdline()) for p in processes)  # no job runner
        assert any(p.name() == "raylet" for p in processes)
        ray_dirs = {
            Path(arg.split("=", 1)[1]) for p in processes for arg in p.cmdline() if arg.startswith("--temp-dir=")
        }
        assert len(ray_dirs) == 2
        # the second service's Ray head fails (its GCS dies): that service stops on its own, saying why,
        # and its other children (the MLflow server) end with it
        next(p for p in tree(started[1].pid) if p.name() == "gcs_server").kill()
        assert started[1].wait(timeout=120) == 1  # its teardown: dispatcher, API, MLflow, Ray, on a loaded machine
        assert "ascl serve: the local Ray head exited; see" in (homes[1] / "serve.log").read_text()
    finally:
        for process in started:
            process.kill()  # SIGKILL, and nothing if it has ended already
            process.wait()
    deadline = time.monotonic() + 60
    while (left := [p for p in processes if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, [" ".join(p.cmdline())[:200] for p in left]
    wait_for(
        lambda: not any(d.exists() for d in ray_dirs), timeout_s=30, what="Ray's session files (and token) removed"
    )
