"""A job's log followed over real HTTP (uvicorn, SQLite and PostgreSQL), as `ascl jobs logs --follow`
and the dashboard follow it: whole lines only (a line being written waits for its end), a retry's
log from its first line, and streams that end at their lifetime reopened where they stopped, until
the job ends. The log here is the attempt's kept tail in the database, where the API reads it when
Ray has none (this API process has no cluster)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from service.api.app import create_app
from service.client import AsclClient
from service.cluster import StaticCluster
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts, store
from service.jobs.status import JobStatus
from service.settings import ServiceSettings
from tests.conftest import make_token, serving


@pytest.fixture
def client(sessions, tmp_path) -> Iterator[AsclClient]:
    settings = ServiceSettings(data_dir=tmp_path, log_stream_max_s=1.0)  # streams end while the job runs
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with serving(app) as port:
        yield AsclClient(f"http://127.0.0.1:{port}", token=make_token(sessions))


def claim(sessions, job_id: str) -> int:
    with session_scope(sessions) as session:
        attempt = attempts.claim(session, session.get(Job, job_id), dispatcher="test", checkpoint_dir="/tmp/x")
        assert attempt is not None
        return attempt.attempt_no


def write_log(sessions, job_id: str, attempt_no: int, text: str) -> None:
    with session_scope(sessions) as session:
        attempts.get_attempt(session, job_id, attempt_no).log_tail = text


def move(sessions, job_id: str, to: JobStatus) -> None:
    with session_scope(sessions) as session:
        assert store.transition(session, job_id, to, actor="test", reason="test") is not None


def wait_for(lines: list[str], count: int) -> None:
    deadline = time.monotonic() + 20
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_followed_log_is_whole_lines_once_each_across_streams_and_retries(client, sessions):
    job_id = client.submit({"preset": "digits-ascl"})["id"]
    claim(sessions, job_id)
    write_log(sessions, job_id, 1, "epoch 1 loss 0.9\nepoch 2 lo")
    lines: list[str] = []
    follower = threading.Thread(target=lambda: lines.extend(client.follow_logs(job_id)), daemon=True)
    follower.start()
    wait_for(lines, 1)
    time.sleep(2.5)  # more than a stream's lifetime: the follower has reconnected at least once
    assert lines == ["epoch 1 loss 0.9"]  # not the half-written line, not the first line twice
    write_log(sessions, job_id, 1, "epoch 1 loss 0.9\nepoch 2 loss 0.7\nlost\n")
    wait_for(lines, 3)
    move(sessions, job_id, JobStatus.QUEUED)  # retried: a new attempt with a log of its own
    assert claim(sessions, job_id) == 2
    write_log(sessions, job_id, 2, "resumed from epoch 2\n")
    wait_for(lines, 5)
    move(sessions, job_id, JobStatus.CANCELLED)
    follower.join(timeout=20)
    assert not follower.is_alive()  # the follow ends with the job
    assert lines == ["epoch 1 loss 0.9", "epoch 2 loss 0.7", "lost", "[attempt 2]", "resumed from epoch 2"]


def test_the_cli_shows_control_characters_of_a_log_as_escapes(client, sessions, capsys):
    from ascl.cli import main

    job_id = client.submit({"preset": "digits-ascl"})["id"]
    claim(sessions, job_id)
    write_log(sessions, job_id, 1, "step 1\x1b[2J\x1b]0;owned\x07\nstep 2\n")
    move(sessions, job_id, JobStatus.CANCELLED)
    connection = ["--api", client.base_url, "--token", make_token(sessions)]
    for follow in ([], ["--follow"]):
        assert main(["jobs", "logs", job_id, *follow, *connection]) == 0
        shown = capsys.readouterr().out
        assert shown.splitlines() == ["step 1\\x1b[2J\\x1b]0;owned\\x07", "step 2"]


def test_a_dropped_stream_is_reopened_where_it_was():
    """A proxy that cuts an open stream (idle timeout): the follower reconnects with the last id."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    asked: list[str] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

    def chunk(text: str) -> bytes:
        return f"{len(text.encode()):x}\r\n{text}\r\n".encode()

    def serve() -> None:
        for answer in (chunk("id: 1:2\ndata: a\n\n"), chunk("event: end\ndata: SUCCEEDED\n\n") + b"0\r\n\r\n"):
            connection, _ = listener.accept()
            with connection:
                request = connection.recv(65536).decode()
                asked.append(next((h for h in request.split("\r\n") if h.lower().startswith("last-event-id")), ""))
                connection.sendall(head + answer)  # the first ends without the stream's last chunk: cut

    threading.Thread(target=serve, daemon=True).start()
    follower = AsclClient(f"http://127.0.0.1:{listener.getsockname()[1]}", token="t")
    assert list(follower.follow_logs("0" * 32)) == ["a"]
    assert asked == ["", "Last-Event-ID: 1:2"]
    listener.close()
