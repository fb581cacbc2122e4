"""The embedded Ray head's start: ready once its node has registered (its dashboard answers before
that), and started again when it exits while starting (`ray start` gives its node a fixed 30 s to
register, which a loaded machine can miss: the head then exits, after its dashboard has answered)."""

from __future__ import annotations

import re
import sys
import tempfile
import time

import psutil
import pytest

from control import local_ray
from control.local_ray import START_ATTEMPTS, RayHeadDidNotStart, start_local_ray

# A stand-in for `ray start --head --block`: its dashboard answers at once; the first FAKE_RAY_FAILURES
# starts exit 2 s later as Ray does when its node misses the deadline, the next one says it started.
FAKE_RAY = """#!{python}
import http.server, os, pathlib, sys, threading, time

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

port = next(int(arg.split("=")[1]) for arg in sys.argv if arg.startswith("--dashboard-port="))
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
tries = pathlib.Path(os.environ["FAKE_RAY_TRIES"])
count = int(tries.read_text()) + 1 if tries.exists() else 1
tries.write_text(str(count))
if count <= int(os.environ["FAKE_RAY_FAILURES"]):
    time.sleep(2)
    print("Exception: The current node timed out during startup.", flush=True)
    sys.exit(1)
print("Ray runtime started.", flush=True)
time.sleep(600)
"""


@pytest.fixture
def fake_ray(tmp_path, monkeypatch):
    executable = tmp_path / "ray"
    executable.write_text(FAKE_RAY.format(python=sys.executable))
    executable.chmod(0o755)
    monkeypatch.setattr(local_ray, "RAY_EXECUTABLE", executable)
    monkeypatch.setenv("FAKE_RAY_TRIES", str(tmp_path / "tries"))
    return tmp_path / "tries"


def test_a_head_that_exits_while_starting_is_started_again(fake_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RAY_FAILURES", "1")
    local = start_local_ray(num_cpus=0, num_gpus=0, log=tmp_path / "ray-head.log", timeout_s=30)
    try:
        time.sleep(3)  # a head taken as started when its dashboard answered would have exited by now
        assert local.alive()
        assert fake_ray.read_text() == "2"
    finally:
        local.stop()
    assert not local.temp_dir.exists()


def test_a_head_that_keeps_exiting_while_starting_is_an_error_naming_its_log(fake_ray, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RAY_FAILURES", str(START_ATTEMPTS))
    log = tmp_path / "ray-head.log"
    with pytest.raises(RayHeadDidNotStart, match=f"exited while starting, {START_ATTEMPTS} times; see {log}"):
        start_local_ray(num_cpus=0, num_gpus=0, log=log, timeout_s=30)
    assert fake_ray.read_text() == str(START_ATTEMPTS)


def test_an_interrupted_start_leaves_no_head_and_no_directory(fake_ray, tmp_path, monkeypatch):
    """Ctrl-C while the head starts: the head being started stops, and its directory (its token) goes."""
    monkeypatch.setenv("FAKE_RAY_FAILURES", "0")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    started = []

    def interrupted(dashboard_url: str) -> bool:
        started.append(dashboard_url)
        raise KeyboardInterrupt

    monkeypatch.setattr(local_ray, "dashboard_answers", interrupted)
    monkeypatch.setattr(local_ray, "_said_started", lambda head: fake_ray.exists())
    with pytest.raises(KeyboardInterrupt):
        start_local_ray(num_cpus=0, num_gpus=0, log=tmp_path / "ray-head.log", timeout_s=30)
    assert started
    assert fake_ray.read_text() == "1"
    assert list((tmp_path / "scratch").iterdir()) == []  # the head's directory, and so its token, went
    heads = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "ray") in " ".join(p.info["cmdline"] or [])]
    assert heads == []


def test_a_missing_ray_is_one_error_at_once_and_leaves_no_directory(tmp_path, monkeypatch):
    """A start that can never succeed is not tried again."""
    monkeypatch.setattr(local_ray, "RAY_EXECUTABLE", tmp_path / "no-ray-here")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    log = tmp_path / "ray-head.log"
    missing = re.escape(str(tmp_path / "no-ray-here"))
    with pytest.raises(RayHeadDidNotStart, match=f"cannot run {missing} .*; see {re.escape(str(log))}"):
        start_local_ray(num_cpus=0, num_gpus=0, log=log, timeout_s=30)
    assert log.read_text().count("cannot run") == 1
    assert list((tmp_path / "scratch").iterdir()) == []
