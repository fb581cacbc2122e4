"""Log streams over real HTTP (uvicorn on a local port): forty quiet streams do not freeze the
synchronous routes or the heartbeats that keep running jobs alive, streams are bounded per user and
in total, their poll interval is bounded, and each ends after its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token, serving

QUIET_STREAMS = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(sessions, tmp_path) -> Iterator[str]:
    settings = ServiceSettings(
        data_dir=tmp_path, log_streams_per_user=QUIET_STREAMS + 5, log_streams_total=QUIET_STREAMS + 5
    )
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def running_attempt(sessions, job_id: str) -> str:
    """Claim the job as a dispatcher would; returns the attempt's fencing token."""
    with session_scope(sessions) as session:
        attempt = attempts.claim(session, session.get(Job, job_id), dispatcher="test", checkpoint_dir="/tmp/x")
        assert attempt is not None
        return attempt.fencing_token


def test_forty_quiet_streams_do_not_freeze_heartbeats_or_synchronous_routes(server, sessions):
    headers = bearer(make_token(sessions))
    job_id = httpx.post(f"{server}/api/v1/jobs", json={"preset": "digits-ascl"}, headers=headers).json()["id"]
    token = running_attempt(sessions, job_id)

    async def scenario() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=QUIET_STREAMS + 10)
        async with httpx.AsyncClient(base_url=server, headers=headers, limits=limits, timeout=30) as client:
            opened = asyncio.Event()
            started = 0

            async def hold_stream() -> None:
                nonlocal started
                async with client.stream("GET", f"/api/v1/jobs/{job_id}/logs/stream", params={"poll_s": 10}) as r:
                    assert r.status_code == 200
                    started += 1
                    if started == QUIET_STREAMS:
                        opened.set()
                    await asyncio.sleep(3600)  # a job that prints nothing: the stream stays open

            holders = [asyncio.create_task(hold_stream()) for _ in range(QUIET_STREAMS)]
            await asyncio.wait_for(opened.wait(), 30)
            began = time.monotonic()
            listed = await client.get("/api/v1/jobs")
            listed_s = time.monotonic() - began
            began = time.monotonic()
            beat = await client.post(
                f"/api/v1/internal/jobs/{job_id}/attempts/1/heartbeat", json={}, headers={"X-Attempt-Token": token}
            )
            beat_s = time.monotonic() - began
            assert listed.status_code == 200, listed.text
            assert beat.status_code == 200, beat.text
            for holder in holders:
                holder.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
            return listed_s, beat_s

    listed_s, beat_s = asyncio.run(scenario())
    assert listed_s < 5  # a frozen pool waits for the streams' lifetime
    assert beat_s < 5


def test_streams_are_bounded_per_user_and_their_poll_interval_is_bounded(sessions, tmp_path):
    settings = ServiceSettings(data_dir=tmp_path, log_streams_per_user=2, log_streams_total=3, log_stream_max_s=1.0)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    alice, bob = bearer(make_token(sessions, "alice", "user")), bearer(make_token(sessions, "bob", "user"))
    try:
        job = httpx.post(f"{base}/api/v1/jobs", json={"preset": "digits-ascl"}, headers=alice).json()["id"]
        stream = f"{base}/api/v1/jobs/{job}/logs/stream"
        for poll in ("0", "0.1", "11", "inf", "nan"):
            assert httpx.get(stream, params={"poll_s": poll}, headers=alice).status_code == 422, poll

        async def scenario() -> list[int]:
            async with (
                httpx.AsyncClient(timeout=30) as client,
                client.stream("GET", stream, headers=alice, params={"poll_s": 0.2}) as first,
                client.stream("GET", stream, headers=alice, params={"poll_s": 0.2}) as second,
            ):
                third = await client.get(stream, headers=alice)
                return [first.status_code, second.status_code, third.status_code]

        assert asyncio.run(scenario()) == [200, 200, 429]
        began = time.monotonic()
        with httpx.stream("GET", stream, headers=alice, params={"poll_s": 0.2}, timeout=30) as ended:
            text = ended.read().decode()
        assert "event: end" in text
        assert time.monotonic() - began < 10  # its lifetime is 1 s
        other = httpx.get(stream, headers=bob)
        assert other.status_code == 403  # not bob's job, and streams are not shared by default
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_stream_whose_first_send_fails_gives_its_slot_back(sessions, tmp_path):
    """A server speaking ASGI 2.4 reports a client gone by failing its send, and never iterates the
    body: the slot was given back in the body's own `finally`, so it leaked one per such request."""
    settings = ServiceSettings(data_dir=tmp_path, log_streams_per_user=2, log_stream_max_s=1.0)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    token = make_token(sessions, "alice", "user")
    with TestClient(app, headers=bearer(token)) as client:  # the app's lifespan, and its event loop
        job = client.post("/api/v1/jobs", json={"preset": "digits-ascl"}).json()["id"]
        path = f"/api/v1/jobs/{job}/logs/stream"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def gone(message: dict) -> None:
            raise OSError("the client went away")

        for _ in range(3):
            with contextlib.suppress(Exception):
                client.portal.call(app, scope, receive, gone)
        assert dict(app.state.stream_slots.open) == {}
        opened = client.get(path, params={"poll_s": 0.2})
        assert opened.status_code == 200  # and streams still open
