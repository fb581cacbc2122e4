"""Where a submission's work before its transaction runs: a usual train job's on the event loop (it
is CPU work smaller than a thread-pool hop); a large body's in the thread pool (converting a crafted
1 MB body takes ~0.25 s, which would hold up every other request on the loop)."""

from __future__ import annotations

import json
import threading

from fastapi.testclient import TestClient

from service.api import jobs
from service.api.app import create_app
from service.cluster import StaticCluster
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token


def test_a_large_body_is_prepared_off_the_event_loop(sessions, monkeypatch):
    threads: list[str] = []

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    real = jobs.prepare
    monkeypatch.setattr(jobs, "prepare", recording)
    app = create_app(sessions, settings=ServiceSettings(), cluster=StaticCluster({"CPU": 8.0}))
    token = make_token(sessions, "ann", "user")
    small = json.dumps({"preset": "digits-ascl"})
    large = small + " " * 20_000  # valid JSON, 20 KB
    headers = {**bearer(token), "Content-Type": "application/json"}
    with TestClient(app) as api:
        for body in (small, large):
            assert api.post("/api/v1/jobs", content=body, headers=headers).status_code == 201
    small_thread, large_thread = threads
    assert "worker" not in small_thread.lower()
    assert "worker" in large_thread.lower()  # anyio's thread pool
