"""The embedded default's Ray: a head node on this machine, started with `ray start --head --block`
under `control.fate`, so it (raylet, GCS, dashboard, workers) dies with `ascl serve` however that
ends. Every port is chosen free and the session files live in a temporary directory of its own:
two services on one host do not collide on Ray's fixed default ports (the dashboard agent's 52365,
the dashboard's 8265). Ray's token authentication stays on, with a token of this head's own: Ray's
default token file (~/.ray/auth_token) is shared by every cluster of the user."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from control.children import ChildDidNotStart, FateShared, answers, await_start
from control.fate import NOT_STARTED
from control.ports import free_ports

PORT_FLAGS = (
    "port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
)


RAY_GRACE_S = 2.0
RAY_EXECUTABLE = Path(sys.executable).with_name("ray")
# What `ray start` prints once its node has registered with the GCS. Its dashboard answers before that,
# and a node that does not register within Ray's fixed 30 s (a loaded machine) makes the head exit.
STARTED_MARKER = b"Ray runtime started."
START_ATTEMPTS = 3

logger = logging.getLogger(__name__)


@dataclass
class LocalRay:
    address: str  # the GCS address (host:port)
    dashboard_url: str  # the job server
    auth_env: dict[str, str]  # what a client of this head needs in its environment (the token's file)
    head: FateShared
    temp_dir: Path

    def alive(self) -> bool:
        return self.head.alive()

    def stop(self) -> None:
        self.head.stop()  # its directory goes with it, however the head or its watchdog ended


class RayHeadDidNotStart(ChildDidNotStart):
    """The local Ray head would not start; the message names its log."""


def become_client(local: LocalRay) -> None:
    """Point this process's Ray clients (the GCS client, the job server's client) at the head's token. Ray
    reads and caches its token once per process (at import, from ~/.ray/auth_token when that exists),
    so the cache is reset as Ray's own test utilities do (ray._private.authentication_test_utils)."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    os.environ.update(local.auth_env)
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def dashboard_answers(dashboard_url: str) -> bool:
    """Is the head's dashboard up? Any answer means it is; with Ray's token authentication (its
    default) it is a 401."""
    return answers(f"{dashboard_url}/api/version", (200, 401))


def start_local_ray(*, num_cpus: int | None, num_gpus: int | None, log: Path, timeout_s: float = 120) -> LocalRay:
    """A head that exits while starting is started again (new ports, new directory), up to
    START_ATTEMPTS starts in all: a port taken meanwhile, or a node that missed Ray's registration
    deadline. `timeout_s` bounds each start."""
    for attempt in range(1, START_ATTEMPTS + 1):
        local = _start_head(num_cpus=num_cpus, num_gpus=num_gpus, log=log, timeout_s=timeout_s)
        if local is not None:
            return local
        logger.warning("the local Ray head exited while starting (try %d of %d); see %s", attempt, START_ATTEMPTS, log)
    raise RayHeadDidNotStart(f"the local Ray head exited while starting, {START_ATTEMPTS} times; see {log}")


def _start_head(*, num_cpus: int | None, num_gpus: int | None, log: Path, timeout_s: float) -> LocalRay | None:
    """The started head, or None if it exited while starting."""
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    temp_dir = Path(tempfile.mkdtemp(prefix="ascl-ray-"))  # short: Ray's socket paths must fit 107 bytes
    token = temp_dir / "auth_token"
    descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    command = [str(RAY_EXECUTABLE), "start", "--head", "--block", "--disable-usage-stats", "--dashboard-host=127.0.0.1"]
    command += [f"--{flag}={port}" for flag, port in ports.items()]
    command += [f"--temp-dir={temp_dir}", "--include-dashboard=true"]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        command.append(f"--num-gpus={num_gpus}")
    # remove: its token too, even after a SIGKILL. grace: `ray start --block` and the raylet take ~10 s to
    # honour SIGTERM, and a Ray head the service started keeps nothing worth a graceful end
    head = FateShared(command, log=log, env=auth_env, remove=temp_dir, grace_s=RAY_GRACE_S)
    dashboard_url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        started = await_start(
            head, lambda: _said_started(head) and dashboard_answers(dashboard_url), timeout_s=timeout_s
        )
    except TimeoutError:
        raise RayHeadDidNotStart(
            f"the local Ray head did not start within {timeout_s:.0f} s (its log never said"
            f" {STARTED_MARKER.decode()!r}, or its dashboard never answered); see {log}"
        ) from None
    if started:
        return LocalRay(f"127.0.0.1:{ports['port']}", dashboard_url, auth_env, head, temp_dir)
    if head.process.returncode == NOT_STARTED:  # no later start can do better
        raise RayHeadDidNotStart(f"cannot run {RAY_EXECUTABLE} (is Ray installed?); see {log}")
    return None


def _said_started(head: FateShared) -> bool:
    return STARTED_MARKER in head.output()
