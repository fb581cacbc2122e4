"""A multi-node Ray cluster on this machine for tests: a head that runs nothing (0 CPUs) and worker
nodes started with `ray start --address`, each with its own ports and a custom resource naming it
({"node_a": 1}), so a test knows where an attempt runs and can kill that node's raylet."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from ray.util.state import list_nodes
from ray.util.state.common import NodeState

from control.children import FateShared
from control.local_ray import RAY_GRACE_S, LocalRay, become_client, dashboard_answers, start_local_ray
from control.ports import free_ports

NODE_PORT_FLAGS = (
    "node-manager-port",
    "object-manager-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
)
# a node whose raylet dies fails its health checks at once (connection refused): declared dead after
# 5 checks a second apart, not Ray's 5 checks 3 s apart; a slow (loaded) node keeps Ray's 10 s timeout
FAST_FAILURE_DETECTION = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5"}


@dataclass
class LocalCluster:
    head: LocalRay
    logs: Path
    nodes: dict[str, FateShared] = field(default_factory=dict)

    def add_node(self, name: str, *, cpus: int = 1, tries: int = 3, timeout_s: float = 120) -> None:
        """Start a node and wait until it has joined; `ray start` gives up on a node whose raylet takes
        over 30 s to register (a loaded machine): such a node is started again."""
        ports = dict(zip(NODE_PORT_FLAGS, free_ports(len(NODE_PORT_FLAGS)), strict=True))
        command = [str(Path(sys.executable).with_name("ray")), "start", f"--address={self.head.address}", "--block"]
        command += [
            "--disable-usage-stats",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--resources={json.dumps({name: 1})}",
        ]
        command += [f"--temp-dir={self.head.temp_dir}", *(f"--{flag}={port}" for flag, port in ports.items())]
        deadline = time.monotonic() + timeout_s
        for _ in range(tries):
            self.nodes[name] = FateShared(
                command, log=self.logs / f"ray-{name}.log", env=self.head.auth_env, grace_s=RAY_GRACE_S
            )
            while self.node_id(name) is None and self.nodes[name].alive():
                assert time.monotonic() < deadline, f"the Ray node {name} did not join within {timeout_s:.0f} s"
                time.sleep(0.5)
            if self.node_id(name) is not None:
                return
        raise AssertionError(f"the Ray node {name} exited {tries} times; see {self.logs}")

    def _nodes(self) -> list[NodeState]:
        # the state API over HTTP: this process never joins the cluster as a driver (a driver dies with
        # the head, and the tests restart it)
        return list_nodes(address=self.head.dashboard_url, detail=True, raise_on_missing_output=False)

    def node_id(self, name: str) -> str | None:
        """The live node carrying the resource `name`."""
        alive = [n.node_id for n in self._nodes() if n.state == "ALIVE" and name in (n.resources_total or {})]
        return alive[0] if alive else None

    def name_of(self, node_id: str) -> str:
        for node in self._nodes():
            if node.node_id == node_id:
                return next(key for key in node.resources_total if key in self.nodes)
        raise KeyError(node_id)

    def kill_raylet(self, name: str) -> int:
        """SIGKILL the node's raylet (what a crashed machine looks like to the head); its pid."""
        raylets = [
            p for p in psutil.Process(self.nodes[name].process.pid).children(recursive=True) if p.name() == "raylet"
        ]
        assert raylets, f"no raylet under node {name}"
        raylets[0].kill()
        return int(raylets[0].pid)

    def restart_head(self, *, down_s: float = 5.0, timeout_s: float = 120) -> None:
        """The head crashes (SIGKILL of its whole process tree) and comes back `down_s` later at the
        same address with the same token, as a supervised head does. Its nodes cannot outlive the
        GCS they registered with: they are restarted too, as their own supervisors would."""
        fate = psutil.Process(self.head.head.process.pid)
        command = fate.cmdline()[fate.cmdline().index("--") + 1 :]
        os.killpg(fate.pid, signal.SIGKILL)
        self.head.head.process.wait()
        for node in self.nodes.values():
            node.stop()
        time.sleep(down_s)
        with fast_failure_detection():
            self.head.head = FateShared(
                command, log=self.logs / "ray-head.log", env=self.head.auth_env, grace_s=RAY_GRACE_S
            )
        deadline = time.monotonic() + timeout_s
        while not dashboard_answers(self.head.dashboard_url):
            assert self.head.head.alive(), f"the restarted Ray head exited; see {self.logs}"
            assert time.monotonic() < deadline, f"the restarted Ray head did not answer within {timeout_s:.0f} s"
            time.sleep(0.5)
        for name in list(self.nodes):
            self.add_node(name)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.head.stop()


@contextmanager
def fast_failure_detection() -> Iterator[None]:
    """FAST_FAILURE_DETECTION in this process's environment while a Ray process starts (it inherits it)."""
    saved = {key: os.environ.get(key) for key in FAST_FAILURE_DETECTION}
    os.environ.update(FAST_FAILURE_DETECTION)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_cluster(logs: Path, node_names: tuple[str, ...]) -> LocalCluster:
    """A head (0 CPUs: nothing is scheduled on it) and one 1-CPU node per name; this process becomes
    a client of it (its token), as `ascl serve --ray-address` would."""
    with fast_failure_detection():
        head = start_local_ray(num_cpus=0, num_gpus=0, log=logs / "ray-head.log")
    become_client(head)
    cluster = LocalCluster(head, logs)
    try:
        for name in node_names:
            cluster.add_node(name)
    except BaseException:
        cluster.stop()
        raise
    return cluster
