"""The demo `ascl serve --demo` runs: when the service stops under it (a lost Ray head), one line
and status 1, not a thread's traceback in the service's output."""

from __future__ import annotations

import socket

from control.demo import run_demo


def test_a_service_that_is_gone_ends_the_demo_with_one_line(capsys):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there
    assert run_demo(f"http://127.0.0.1:{port}", "http://127.0.0.1:1", token="t") == 1
    assert capsys.readouterr().err == f"demo: the service at http://127.0.0.1:{port} stopped; the demo stops with it\n"
