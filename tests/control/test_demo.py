"""The demo `ascl serve --demo` runs: when the service stops under it (a lost Ray head), one line
and status 1, not a thread's traceback in the service's output."""

from __future__ import annotations

import socket

from control.demo import run_demo


def test_a_service_that_is_gone_ends_the_demo_with_one_line(capsys):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there
    assert run_demo(f"http://127.0.0.1:{port}", "http://127.0.0.1:1", token="t") == 1
    err = capsys.readouterr().err
    assert err.startswith("demo: stopped following the job: ")
    assert err.count("\n") == 1
