"""control.fate: a child program of `ascl serve` dies with it, even after a SIGKILL, and the scratch
directory it was given (a Ray head's session files and token) goes with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

PARENT = """
import sys, time
from pathlib import Path
from control.children import FateShared
child = FateShared(["sleep", "300"], log=Path(sys.argv[1]), remove=Path(sys.argv[2]))
print(child.process.pid, flush=True)
time.sleep(300)
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_sigkilled_parent_takes_the_command_and_its_directory_along(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "auth_token").write_text("secret")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "child.log"), str(scratch)], stdout=subprocess.PIPE, text=True
    )
    try:
        fate = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 30
        while not (command := [p for p in fate.children() if p.name() == "sleep"]):
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.1)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while not (gone(fate.pid) and gone(command[0].pid) and not scratch.exists()):
        assert time.monotonic() < deadline, "the command or its directory outlived its parent"
        time.sleep(0.1)
