"""control.fate: a child program of `ascl serve` dies with it, even after a SIGKILL, and the scratch
directory it was given (a Ray head's session files and token) goes with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PARENT = """
import json, sys, time
from pathlib import Path
from control.children import FateShared
command, grace = json.loads(sys.argv[3]), float(sys.argv[4])
child = FateShared(command, log=Path(sys.argv[1]), remove=Path(sys.argv[2]), grace_s=grace)
print(child.process.pid, flush=True)
time.sleep(300)
"""
# ignores SIGTERM and keeps writing into the directory that is to be removed (as Ray's processes do)
STUBBORN_WRITER = "trap '' TERM; while true; do mkdir -p {0}/logs; for i in $(seq 300); do : > {0}/logs/$i; done; done"
# the same in a session (and process group) of its own, as Ray starts its workers, naming the directory
WRITER_ELSEWHERE = (
    "setsid sh -c \"trap '' TERM; while true; do mkdir -p {0}/logs; "
    'for i in \\$(seq 300); do : > {0}/logs/\\$i; done; done" & sleep 300'
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def command_under(fate: psutil.Process, name: str) -> psutil.Process:
    """The watchdog's command, once it has started."""
    deadline = time.monotonic() + 30
    while not (command := [p for p in fate.children() if p.name() == name]):
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.1)
    return command[0]


@pytest.mark.parametrize(
    ("command", "name", "grace_s"),
    [
        (["sleep", "300"], "sleep", 10.0),
        (["sh", "-c", STUBBORN_WRITER], "sh", 1.0),
        (["sh", "-c", WRITER_ELSEWHERE], "sh", 1.0),
    ],
    ids=["obedient", "ignores-sigterm-and-writes", "writes-from-its-own-group"],
)
def test_a_sigkilled_parent_takes_the_command_and_its_directory_along(tmp_path, command, name, grace_s):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "auth_token").write_text("secret")
    command = [part.format(scratch) for part in command]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "child.log"), str(scratch), json.dumps(command), str(grace_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        fate = psutil.Process(int(parent.stdout.readline()))
        started = command_under(fate, name)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while not (gone(fate.pid) and gone(started.pid) and not scratch.exists()):
        assert time.monotonic() < deadline, "the command or its directory outlived its parent"
        time.sleep(0.1)


def test_stopping_a_child_whose_watchdog_was_killed_ends_what_the_watchdog_left(tmp_path):
    """The watchdog SIGKILLed on its own (an OOM killer's pick, a hostile `kill -9`): its command lives
    on in its group, as Ray's raylet and GCS would; the stop that `ascl serve` then makes ends it and
    removes its directory."""
    from control.children import FateShared

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = FateShared(["sleep", "300"], log=tmp_path / "child.log", remove=scratch)
    fate = psutil.Process(child.process.pid)
    command = command_under(fate, "sleep")
    fate.kill()
    child.process.wait()
    assert not gone(command.pid)  # left behind, until the stop
    child.stop()
    deadline = time.monotonic() + 10
    while not gone(command.pid):
        assert time.monotonic() < deadline, "the command outlived the stop"
        time.sleep(0.1)
    assert not scratch.exists()


def test_a_stop_that_outlasts_its_timeout_still_ends_the_command_and_removes_its_directory(tmp_path):
    """The stop SIGKILLs a watchdog still busy after the timeout, and so does its clean-up itself."""
    from control.children import FateShared

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = FateShared(["sh", "-c", WRITER_ELSEWHERE.format(scratch)], log=tmp_path / "child.log", remove=scratch)
    command_under(psutil.Process(child.process.pid), "sh")
    deadline = time.monotonic() + 30
    while not (scratch / "logs").exists():  # the writer in a group of its own has started
        assert time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.1)
    child.stop(timeout_s=0.05)  # far shorter than the watchdog's own end (its grace, its clean-up)
    assert child.process.returncode == -signal.SIGKILL
    writers = [p for p in psutil.process_iter(["cmdline"]) if str(scratch) in " ".join(p.info["cmdline"] or [])]
    assert all(gone(p.pid) for p in writers)
    assert not scratch.exists()


def test_a_watchdog_that_ended_without_removing_the_directory_leaves_it_to_the_stop(tmp_path):
    """However the watchdog failed to remove it (it crashed, something kept writing), the directory
    (a Ray head's token) does not outlive the stop."""
    from control.children import FateShared

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = FateShared(["true"], log=tmp_path / "child.log", remove=scratch)
    assert child.process.wait(timeout=60) == 0
    scratch.mkdir()  # as the watchdog would have left it
    (scratch / "auth_token").write_text("secret")
    child.stop()
    assert not scratch.exists()


@pytest.mark.parametrize(
    ("program", "reason"), [("missing", "No such file or directory"), ("plain", "Permission denied")]
)
def test_a_command_that_cannot_be_run_is_one_line_and_takes_its_directory_along(tmp_path, program, reason):
    from control.fate import NOT_STARTED

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "plain").write_text("not a program")  # not executable
    path = str(tmp_path / program)
    command = [sys.executable, "-m", "control.fate", str(os.getpid()), "--remove", str(scratch), "--", path]
    run = subprocess.run(command, timeout=60, check=False, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (NOT_STARTED, f"control.fate: cannot run {path}: {reason}\n")
    assert not scratch.exists()
