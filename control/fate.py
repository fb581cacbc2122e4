"""`python -m control.fate PARENT_PID [--remove DIR] [--grace SECONDS] -- COMMAND...`: run COMMAND so
that it dies with PARENT_PID, and remove DIR (the command's scratch space, e.g. Ray's session files
and token) after.

This process leads its own process group (its parent starts it with start_new_session) and asks
the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so even a SIGKILLed parent takes
the whole group with it: the command and every process it starts (MLflow's server workers, Ray's
raylet, GCS and workers), unless one of them leaves the group on purpose. A SIGTERM from the
parent stops the group the same way: SIGTERM first, SIGKILL after a grace period (--grace, else
GRACE_S)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from service.parent_death import die_with_parent

GRACE_S = 10.0
NOT_STARTED = 127  # the exit status when the command cannot be run at all (as a shell's "not found")


def main(argv: list[str]) -> int:
    parent, options, command = int(argv[0]), argv[1 : argv.index("--")], argv[argv.index("--") + 1 :]
    named = dict(zip(options[::2], options[1::2], strict=True))
    remove, grace_s = named.get("--remove"), float(named.get("--grace", GRACE_S))
    if not die_with_parent(signal.SIGTERM, parent=parent):  # it died before the signal was armed
        if remove is not None:  # made for the command (with a token in it, for Ray): it goes all the same
            remove_directory(remove)
        return 1
    try:
        child = subprocess.Popen(command)
    except (FileNotFoundError, PermissionError) as error:  # no retry can help; its directory is of no use
        sys.stderr.write(f"control.fate: cannot run {command[0]}: {error.strerror}\n")
        if remove is not None:
            remove_directory(remove)
        return NOT_STARTED
    stopping: list[float] = []  # when the stop began

    def stop(_signal: int, _frame: FrameType | None) -> None:
        if not stopping:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal below reaches us too
            os.killpg(os.getpgrp(), signal.SIGTERM)
            stopping.append(time.monotonic())

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while (code := child.poll()) is None and not (stopping and time.monotonic() - stopping[0] > grace_s):
        time.sleep(0.1)
    stop(signal.SIGTERM, None)  # the command ended by itself: take what it left behind with it
    time.sleep(0.5)
    kill_what_is_left(os.getpgrp(), remove)  # before the removal: nothing may still be writing into the directory
    if remove is not None:
        remove_directory(remove)
    return 1 if code is None else code


def kill_what_is_left(group: int, directory: str | None) -> None:
    """SIGKILL the rest of process group `group` (but the caller), and every process whose command
    line names the directory: Ray starts its workers in process groups of their own."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):  # ProcessLookupError included: it ended meanwhile
            named = directory is not None and directory.encode() in Path(f"/proc/{entry}/cmdline").read_bytes()
            if named or os.getpgid(int(entry)) == group:
                os.kill(int(entry), signal.SIGKILL)
    time.sleep(0.2)  # SIGKILL is delivered at once; the processes' ends take a moment


def remove_directory(directory: str, tries: int = 10) -> None:
    """Remove it, again if something that was still ending wrote into it meanwhile."""
    for _ in range(tries):
        shutil.rmtree(directory, ignore_errors=True)
        time.sleep(0.2)
        if not os.path.exists(directory):
            return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
