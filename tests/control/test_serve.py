"""What `ascl serve` prints about the dashboard (the admin token only where a person reads it), and its
API port: taken, it stops at once saying so; 0, any free one, held from the start."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from control.ports import CannotListen, listening_sockets
from control.serve import dashboard_url
from service.settings import ServiceSettings

TOKEN = "ascl_0123456789abcdef01234567_" + "x" * 43


def test_on_a_terminal_the_dashboard_link_signs_in_through_its_fragment():
    url = dashboard_url("http://127.0.0.1:8000", TOKEN, terminal=True)
    assert url == f"http://127.0.0.1:8000/ui/#token={TOKEN}"  # after '#': never sent to a server


def test_printed_to_a_file_the_dashboard_link_carries_no_token():
    url = dashboard_url("http://127.0.0.1:8000", TOKEN, terminal=False)
    assert url.startswith("http://127.0.0.1:8000/ui/ ")
    assert TOKEN not in url


def test_a_taken_port_stops_serve_at_once_saying_so_before_anything_starts(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "ascl.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "d")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "choose another port (0: any free one)" in done.stderr
    assert not (tmp_path / "d").exists()  # no database, no Ray, no MLflow was started


def test_port_zero_listens_on_a_free_port_on_every_address_of_the_host():
    held = listening_sockets("localhost", 0)
    try:
        (port,) = {sock.getsockname()[1] for sock in held}  # one port, on 127.0.0.1 (and ::1 where there is one)
        assert port > 0
        assert ("127.0.0.1", port) in [sock.getsockname()[:2] for sock in held]
        with pytest.raises(CannotListen, match=f"cannot listen on 127.0.0.1:{port}: .*choose another port"):
            listening_sockets("127.0.0.1", port)  # SO_REUSEADDR as uvicorn's own: still refused
    finally:
        for sock in held:
            sock.close()
    for host, port, reason in (
        ("127.0.0.1", 70000, "127.0.0.1:70000"),
        ("::1", 70000, r"\[::1\]:70000"),  # an IPv6 address bracketed, as in the API's URL
        ("no-such-host.invalid", 0, "no-such-host.invalid"),
    ):
        with pytest.raises(CannotListen, match=reason) as refused:
            listening_sockets(host, port)
        assert "choose another port" not in str(refused.value)  # not a port in use: no such advice


def test_the_api_url_brackets_an_ipv6_host():
    assert ServiceSettings(host="::1", port=8000).api_url == "http://[::1]:8000"
    assert ServiceSettings(host="127.0.0.1", port=8000).api_url == "http://127.0.0.1:8000"


def test_the_stack_names_the_child_it_lost(tmp_path):
    """What `ascl serve` checks every second: once its MLflow server (or Ray head) has exited, it stops
    and says which, with the log to read."""
    from control.children import FateShared
    from control.mlflow_server import MlflowServer
    from control.serve import Stack

    log = tmp_path / "mlflow-server.log"
    child = FateShared(["sleep", "60"], log=log)
    stack = Stack(ServiceSettings(data_dir=tmp_path), None, MlflowServer("http://x", child), TOKEN, [], None)
    try:
        assert stack.lost_child() is None
    finally:
        child.stop()
    assert stack.lost_child() == f"the MLflow server exited; see {log}"


class ApiThatStops:
    """uvicorn's server, as far as `serve` uses it, that starts and then ends by itself."""

    def __init__(self, config: object) -> None:
        self.started = False
        self.should_exit = False

    def run(self, sockets: object = None) -> None:
        self.started = True
        time.sleep(0.5)


def test_serve_stops_with_status_1_when_its_api_server_ends_by_itself(tmp_path, monkeypatch, capsys):
    """Not 0: a supervisor must see that the service failed, and why."""
    from control import serve as serve_module

    settings = ServiceSettings(data_dir=tmp_path, config_dir=tmp_path / "config", port=8123)
    stack = SimpleNamespace(
        settings=settings,
        app=lambda: None,
        listeners=[],
        admin_token=TOKEN,
        mlflow=SimpleNamespace(url="http://127.0.0.1:1"),
        cluster=SimpleNamespace(dashboard_url="http://127.0.0.1:2"),
        lost_child=lambda: None,
    )
    monkeypatch.setattr(serve_module, "running_stack", lambda _: contextlib.nullcontext(stack))
    monkeypatch.setattr(serve_module.uvicorn, "Server", ApiThatStops)
    monkeypatch.setattr(serve_module, "freeze_startup_heap", lambda: None)  # not this test process's heap
    assert serve_module.serve(settings) == 1
    assert "ascl serve: the API server stopped; stopping" in capsys.readouterr().err


@pytest.mark.parametrize("child", ["ray", "mlflow"])
def test_a_child_that_would_not_start_is_one_line_and_status_1(tmp_path, monkeypatch, capsys, child):
    """Through `ascl serve` itself: no traceback, the log to read, and not a usage error's status 2."""
    from ascl import cli
    from control import serve as serve_module
    from control.local_ray import RayHeadDidNotStart
    from control.mlflow_server import MlflowServerDidNotStart

    error = RayHeadDidNotStart if child == "ray" else MlflowServerDidNotStart
    message = f"the {child} program exited while starting; see {tmp_path / f'{child}.log'}"

    def would_not_start(settings: ServiceSettings, **_: object) -> int:
        raise error(message)

    monkeypatch.setattr(serve_module, "serve", would_not_start)
    assert cli.main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 1
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_ray_head_that_would_not_start_gives_up_the_mlflow_start_beside_it(tmp_path, monkeypatch):
    """The error is told when the head fails, not once the MLflow server has started (or timed out)."""
    from control import serve as serve_module
    from control.children import StartAbandoned
    from control.local_ray import RayHeadDidNotStart

    given_up = []

    def slow_mlflow(settings: ServiceSettings, *, abandoned) -> None:
        given_up.append(abandoned.wait(timeout=60))
        raise StartAbandoned

    def no_head(**_: object) -> None:
        raise RayHeadDidNotStart("the local Ray head exited while starting")

    monkeypatch.setattr(serve_module, "start_mlflow_server", slow_mlflow)
    monkeypatch.setattr(serve_module, "start_local_ray", no_head)
    with pytest.raises(RayHeadDidNotStart), serve_module.running_stack(ServiceSettings(data_dir=tmp_path, port=0)):
        pass
    assert given_up == [True]  # set, not waited out


@pytest.mark.parametrize("sent", ["SIGTERM", "SIGINT"])
def test_sigterm_and_an_ignored_sigint_stop_serve_as_ctrl_c_does_and_a_second_one_waits(sent):
    """Started in a script's background (SIGINT ignored) or stopped by a service manager (SIGTERM):
    the first signal runs the service's own stop, a second one does not cut that stop short, and the
    handlers are the process's own again after."""
    program = (
        "import signal, os, sys, time\n"
        "from control.serve import stopped_by_signals\n"
        "before = signal.getsignal(signal.SIGTERM)\n"
        "with stopped_by_signals():\n"
        "    try:\n"
        f"        os.kill(os.getpid(), signal.{sent}); time.sleep(10)\n"
        "    except KeyboardInterrupt:\n"
        f"        os.kill(os.getpid(), signal.{sent}); time.sleep(0.2)  # while stopping\n"
        "with stopped_by_signals() as stopping:\n"
        "    stopping()  # a stop begun otherwise (a lost child, the demo's end)\n"
        f"    os.kill(os.getpid(), signal.{sent}); time.sleep(0.2)\n"
        "sys.exit(7 if signal.getsignal(signal.SIGTERM) == before else 8)\n"
    )
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731 (as `cmd &` in a script)
    done = subprocess.run([sys.executable, "-c", program], preexec_fn=ignore_sigint, timeout=60, check=False)
    assert done.returncode == 7
