"""Child programs of `ascl serve` (the MLflow server, the local Ray head) that die with it, even when
it is SIGKILLed: each runs under `control.fate` in a process group of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from control.fate import kill_what_is_left, remove_directory


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

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        elif self.process.returncode < 0:
            # the watchdog itself was killed (a watchdog that ended by itself took its group along):
            # the command and what it started live on in its group, e.g. Ray's raylet and GCS
            directory = None if self.remove is None else str(self.remove)
            kill_what_is_left(self.process.pid, directory)
            if directory is not None:
                remove_directory(directory)
