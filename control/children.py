"""Child programs of `ascl serve` (the MLflow server, the local Ray head) that die with it, even when
it is SIGKILLed: each runs under `control.fate` in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from control.fate import kill_what_is_left, remove_directory


class ChildDidNotStart(RuntimeError):
    """A program `ascl serve` starts would not start; the message names its log."""


class StartAbandoned(Exception):
    """Whoever waited for a start gave it up (the start beside it failed): the child was stopped."""


class FateShared:
    def __init__(
        self,
        command: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        remove: Path | None = None,
        grace_s: float | None = None,
    ) -> None:
        """`remove`: a directory of the command's own, deleted once it has ended however that came.
        `grace_s`: how long a stop waits after SIGTERM before SIGKILL (control.fate's default)."""
        self.log = log
        self.log_start = log.stat().st_size if log.exists() else 0  # the log is appended to: this start's part
        self.remove = remove
        options = ["--remove", str(remove)] if remove is not None else []
        options += ["--grace", str(grace_s)] if grace_s is not None else []
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "control.fate", str(os.getpid()), *options, "--", *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which control.fate kills as a whole
                env={**os.environ, **(env or {})},
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> bytes:
        """What this run of the command has written to its log so far."""
        try:
            with self.log.open("rb") as text:
                text.seek(self.log_start)
                return text.read()
        except FileNotFoundError:  # removed meanwhile
            return b""

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process.returncode < 0 or (self.remove is not None and self.remove.exists()):
            # the watchdog was killed (by the SIGKILL above, or on its own) or failed before its clean-up:
            # the command and what it started may live on (Ray's workers leave the group), its directory too
            directory = None if self.remove is None else str(self.remove)
            kill_what_is_left(self.process.pid, directory)
            if directory is not None:
                remove_directory(directory)


def await_start(
    child: FateShared, ready: Callable[[], bool], *, timeout_s: float, abandoned: threading.Event | None = None
) -> bool:
    """True once `ready()` holds and the child is still alive after it (a child that exits between
    the checks is not started); False once it has exited (stopped, so that what a killed watchdog
    left goes too). Raises TimeoutError after `timeout_s`, StartAbandoned once `abandoned` is set; a
    timeout, an abandon or an interrupt stops the child."""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if abandoned is not None and abandoned.is_set():
                raise StartAbandoned
            if ready() and child.alive():
                return True
            if not child.alive():
                child.stop()
                return False
            time.sleep(0.5)
        raise TimeoutError
    except BaseException:
        child.stop()
        raise


def answers(url: str, statuses: tuple[int, ...] = (200,)) -> bool:
    """Does a server answer at `url` with one of `statuses`? (No connection yet: no.)"""
    try:
        return httpx.get(url, timeout=2).status_code in statuses
    except httpx.TransportError:
        return False
