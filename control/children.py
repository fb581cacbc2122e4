"""Child programs of `ascl serve` (the MLflow server, the local Ray head) that die with it, even when
it is SIGKILLed: each runs under `control.fate` in a process group of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
