"""A process that armed `die_with_parent` ends when its parent is SIGKILLed; one whose parent is
already gone is told so instead of waiting for a signal that never comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

CHILD = (
    "import signal, sys, time; from service.parent_death import die_with_parent; "
    "armed = die_with_parent(signal.SIGKILL); print(armed, flush=True); time.sleep(60)"
)
# the parent starts the child, prints its pid, and sleeps until it is killed
PARENT = (
    "import subprocess, sys, time; "
    f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}]); "
    "print(child.pid, flush=True); time.sleep(60)"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_the_child_dies_with_its_sigkilled_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "True"  # the child (same stdout) armed its signal
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_an_orphan_is_told_its_parent_is_gone():
    from service.parent_death import die_with_parent

    assert die_with_parent(signal.SIGKILL, parent=os.getppid())
    assert not die_with_parent(signal.SIGKILL, parent=os.getppid() + 999_999)
    die_with_parent(0)  # disarm: pytest's own process must not die with its parent
