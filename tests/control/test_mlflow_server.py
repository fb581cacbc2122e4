"""The embedded MLflow server's start: on a free port, started again on another when Ray's processes,
starting beside it, took that port first; on the port asked for, an error at once when it is taken."""

from __future__ import annotations

import http.server
import threading
import time

import httpx
import psutil
import pytest

from control import mlflow_server
from control.children import StartAbandoned
from control.mlflow_server import MlflowServerDidNotStart, start_mlflow_server
from control.ports import free_port
from service.settings import ServiceSettings


class AnswersEverything(http.server.BaseHTTPRequestHandler):
    """What may hold the port: Ray's metrics exporter answers 200 on any path, /health included."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_free_port_taken_before_the_server_binds_it_is_replaced_by_another(tmp_path, monkeypatch):
    """Whatever holds the taken port, and answers there, is not taken for the MLflow server."""
    settings = ServiceSettings(data_dir=tmp_path, mlflow_tracking_uri=None)
    taken = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswersEverything)
    threading.Thread(target=taken.serve_forever, daemon=True).start()
    try:
        second = free_port()
        picks = iter([taken.server_address[1], second])
        monkeypatch.setattr(mlflow_server, "free_port", lambda: next(picks))
        server = start_mlflow_server(settings)
    finally:
        taken.shutdown()
        taken.server_close()
    try:
        assert server.url == f"http://127.0.0.1:{second}"
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        assert (tmp_path / "mlflow-server.log").read_bytes().count(mlflow_server.PORT_TAKEN) == 1
    finally:
        server.stop()


def test_the_port_asked_for_taken_is_an_error_at_once_naming_it(tmp_path, monkeypatch):
    starts: list[int] = []

    def port_taken(settings: ServiceSettings, port: int, **_: object) -> None:
        starts.append(port)

    monkeypatch.setattr(mlflow_server, "_start", port_taken)
    with pytest.raises(
        MlflowServerDidNotStart, match=r"port 5123 \(ASCL_MLFLOW_PORT\) is taken; see .*mlflow-server.log"
    ):
        start_mlflow_server(ServiceSettings(data_dir=tmp_path, mlflow_port=5123))
    assert starts == [5123]


def test_a_start_given_up_stops_the_server_at_once(tmp_path, monkeypatch):
    """`ascl serve` gives the MLflow start up when the Ray head beside it would not start."""
    port = free_port()
    monkeypatch.setattr(mlflow_server, "free_port", lambda: port)
    abandoned = threading.Event()
    threading.Timer(1.0, abandoned.set).start()
    started = time.monotonic()
    with pytest.raises(StartAbandoned):
        start_mlflow_server(ServiceSettings(data_dir=tmp_path, mlflow_tracking_uri=None), abandoned=abandoned)
    assert time.monotonic() - started < 10  # not the start's 120 s, nor the server's own start
    servers = [p for p in psutil.process_iter(["cmdline"]) if str(port) in " ".join(p.info["cmdline"] or [])]
    assert servers == []
