"""The API's reads of Ray's job server are bounded: against a real socket that accepts connections
and never answers (a job server that hangs), a log read gives up at its deadline, reads beyond the
concurrent bound answer at once, and readiness probes share one check; against one that answers,
the log and readiness come through."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from control import job_server
from control.job_server import JobServerReads


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


class JobServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/api/jobs/raysubmit_1/logs":
            body = json.dumps({"logs": "epoch 1\n"}).encode()
        elif self.path == "/api/jobs/raysubmit_html/logs":  # a proxy's page in front of the job server
            body = b"<html>502 Bad Gateway</html>"
        elif self.path == "/api/version":
            body = b'{"version": "5"}'
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_a_silent_job_server_holds_no_caller_past_the_deadline(silent_server, monkeypatch):
    url, connections = silent_server
    # the probes share one check however late a loaded machine starts a pool thread (once, one came
    # after the first probe's deadline and its 2 s answer: a second check)
    monkeypatch.setattr(job_server, "READY_TTL_S", 60.0)
    reads = JobServerReads(url, timeout_s=1.0, concurrent=2)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        readiness = list(pool.map(lambda _: reads.ready(), range(8)))
        probes = len(connections)
        logs = list(pool.map(reads.log_for_request, ["raysubmit_1"] * 8))
    assert readiness == [False] * 8
    assert probes == 1  # eight probes at once: one check
    assert logs == [None] * 8
    assert len(connections) - probes == 2  # log reads beyond the bound of 2 answered at once, unconnected
    assert time.monotonic() - started < 4  # 16 reads of a server that never answers: about two deadlines


def test_a_job_server_that_answers_gives_the_log_and_readiness():
    server = ThreadingHTTPServer(("127.0.0.1", 0), JobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reads = JobServerReads(f"http://127.0.0.1:{server.server_address[1]}")
        assert reads.log_for_request("raysubmit_1") == "epoch 1\n"
        assert reads.log("raysubmit_2") is None  # no record of it
        assert reads.log("raysubmit_html") is None
        assert reads.ready()
    finally:
        server.shutdown()
