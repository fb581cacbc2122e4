"""The service on a Ray cluster of several nodes (a head and two 1-CPU worker nodes on this machine,
each its own `ray start` with its own ports), joined by address as `ascl serve --ray-address` does:
jobs spread over the nodes by their resources, a node lost mid-training (its raylet killed) has
its job retried on another node, resuming from the checkpoint on storage that every node reaches,
and a head restart while a job trains loses no job (nor the service)."""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from control.dispatcher import Dispatcher
from tests.integration.conftest import ApiServer, start_service, wait_for
from tests.integration.invariants import ProcessWatch, check_invariants, workers_alive
from tests.integration.ray_nodes import start_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHAOS_JOBS = 3
CHAOS_S = 30.0  # failures are injected for this long (or until every job has ended)


def job(epochs: int, name: str) -> dict:
    return {
        "preset": "digits-pgdat",
        "model_name": name,
        "overrides": {
            "train.epochs": epochs,
            "data.train_subset": 128,
            "eval.pgd_steps": 1,
            "eval.val_steps": 1,
            "eval.eps_sweep": [],
        },
        "resources": {"cpus": 1},  # a whole node: two jobs cannot share one
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("ray-nodes"), ("node_a", "node_b"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Checkpoint storage: one path that every node reaches (here the same disk; NFS in production)."""
    return tmp_path_factory.mktemp("shared") / "checkpoints"


@pytest.fixture(scope="module")
def service(cluster, shared, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("multinode")
    with start_service(data_dir, "sqlite", ray_address=cluster.head.address, checkpoint_uri=shared.as_uri()) as running:
        yield running


def node_running(service, cluster, job_id: str, attempt: int) -> str | None:
    submission = f"ascl-{job_id}-a{attempt}"
    if service.stack.cluster.status(submission) != "RUNNING":
        return None
    info = service.stack.cluster.client.get_job_info(submission)
    if not info.driver_node_id:
        return None
    return cluster.name_of(info.driver_node_id)


def test_jobs_spread_over_nodes_and_a_lost_node_s_job_resumes_on_another(service, cluster, shared):
    client = service.client
    assert service.stack.cluster.dashboard_url == cluster.head.dashboard_url  # derived from the cluster
    with ProcessWatch() as watch:
        long, short = client.submit(job(12, "multinode-long"))["id"], client.submit(job(2, "multinode-short"))["id"]
        placed = wait_for(
            lambda: (
                (nodes := {j: node_running(service, cluster, j, 1) for j in (long, short)})
                and all(nodes.values())
                and nodes
            ),
            timeout_s=120,
            what="both jobs running",
        )
        assert sorted(placed.values()) == ["node_a", "node_b"]  # one per node: neither fits beside the other
        wait_for(
            lambda: (client.get(long)["progress"] or {}).get("checkpoint_epoch", -1) >= 1,
            timeout_s=120,
            what="a checkpoint of epoch 2",
        )
        lost = placed[long]
        cluster.kill_raylet(lost)
        done = client.wait(long, timeout_s=300)
        other = client.wait(short, timeout_s=300)
        retried_on = cluster.name_of(service.stack.cluster.client.get_job_info(f"ascl-{long}-a2").driver_node_id)
    assert other["status"] == "SUCCEEDED", other["error_message"]
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["attempts"] == 2
    assert retried_on != lost
    assert done["result"]["resumed_from_epoch"] >= 2
    assert done["result"]["epochs_completed"] == 12
    reasons = [e["reason"] for e in client.events(long)]
    # the service names the lost node itself: Ray's message varies ("failed to get job supervisor", ...)
    lost_node = [r for r in reasons if r.startswith("INFRA_LOST") and "retry 1/3" in r]
    assert len(lost_node) == 1, reasons
    assert re.search(r"its node [0-9a-f]{12} left the cluster", lost_node[0]), lost_node
    assert (shared / long / "last.pt").is_file()  # the checkpoint lives on the shared storage
    assert watch.most[long] == 1, "two attempts of one job were alive at once"
    assert watch.seen[long] == {1, 2}
    check_invariants(service.stack.dispatcher.sessions, service.stack.tracker.tracking_uri, [long, short])
    run = MlflowClient(service.stack.tracker.tracking_uri).get_run(done["mlflow_run_id"])
    models = MlflowClient(service.stack.tracker.tracking_uri).search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert len(models) == 1  # one model per job, whatever number of attempts ran


def test_a_head_restart_while_a_job_trains_loses_no_job(service, cluster, shared):
    """The head crashes and comes back (its nodes with it): the service stays up throughout, its
    control plane reconnects by itself, and the job Ray forgot is retried and resumes from its
    checkpoint."""
    client = service.client
    job_id = client.submit(job(12, "head-restart"))["id"]
    wait_for(
        lambda: (client.get(job_id)["progress"] or {}).get("checkpoint_epoch", -1) >= 1,
        timeout_s=120,
        what="a checkpoint",
    )
    cluster.restart_head(down_s=5.0)
    assert client.get(job_id)["id"] == job_id  # the API answered while Ray was away
    done = client.wait(job_id, timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["attempts"] == 2
    assert done["result"]["resumed_from_epoch"] >= 1
    reasons = [e["reason"] for e in client.events(job_id)]
    assert any(r.startswith("INFRA_LOST") and "retry 1/3" in r for r in reasons), reasons
    assert service.stack.thread is not None
    assert service.stack.thread.is_alive()  # the dispatcher too
    check_invariants(service.stack.dispatcher.sessions, service.stack.tracker.tracking_uri, [job_id])


class DispatcherProcess:
    """The dispatcher loop in a thread of its own: kill() ends it, start() runs a new one that, like a
    restarted process, remembers nothing (same database, Ray and MLflow)."""

    def __init__(self, service) -> None:
        self.service = service
        self.starts = 0
        self.stop, self.wake = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        old = self.service.stack.dispatcher
        self.starts += 1
        settings = old.settings.model_copy(update={"dispatcher_name": f"chaos-{self.starts}"})
        dispatcher = Dispatcher(old.sessions, old.cluster, old.tracker, settings)
        self.stop, self.wake = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=dispatcher.run, args=(self.stop, self.wake), kwargs={"interval_s": 0.3}, daemon=True
        )
        self.thread.start()

    def kill(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=60)


class Chaos:
    def __init__(self, service, cluster, dispatcher: DispatcherProcess, rng: random.Random) -> None:
        self.service, self.cluster, self.dispatcher, self.rng = service, cluster, dispatcher, rng

    def strike(self, job_ids: set[str]) -> str:
        what = self.rng.choice(["worker", "dispatcher", "api", "node"])
        return getattr(self, f"kill_{what}")(job_ids)

    def kill_worker(self, job_ids: set[str]) -> str:
        pids = sorted(pid for attempts in workers_alive(job_ids).values() for pid in attempts.values())
        if not pids:
            return "worker: none running"
        pid = self.rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        return f"worker {pid} SIGKILLed"

    def kill_dispatcher(self, _job_ids: set[str]) -> str:
        self.dispatcher.kill()
        time.sleep(self.rng.uniform(0.5, 2))
        self.dispatcher.start()
        return "dispatcher restarted"

    def kill_api(self, _job_ids: set[str]) -> str:
        self.service.api.stop()
        time.sleep(self.rng.uniform(0.5, 3))
        self.service.api = ApiServer.start(self.service.stack, restart=True)
        return "API restarted"

    def kill_node(self, _job_ids: set[str]) -> str:
        live = sorted(name for name in self.cluster.nodes if self.cluster.node_id(name) is not None)
        if len(live) < 2:  # the last node stays: with none, jobs would wait for capacity, not recover
            return "node: only one left"
        victim = self.rng.choice(live)
        self.cluster.kill_raylet(victim)
        return f"node {victim} lost (raylet SIGKILLed)"


def test_chaos_keeps_the_invariants(service, cluster):
    """N small jobs while random components die (a worker, the dispatcher, the API, a node), then: every
    job in exactly one terminal state, never two live attempts of one job, no MLflow run open, no
    worker left behind. ASCL_CHAOS_SEED reproduces a run's sequence of failures."""
    seed = int(os.environ.get("ASCL_CHAOS_SEED", "20261127"))
    print(f"chaos seed: {seed}")
    rng = random.Random(seed)
    while sum(cluster.node_id(name) is not None for name in cluster.nodes) < 2:
        cluster.add_node(f"spare_{len(cluster.nodes)}")
    service.stack.stop.set()  # the service's own dispatcher thread: this test kills and restarts its own
    service.stack.wake.set()
    if service.stack.thread is not None:
        service.stack.thread.join(timeout=60)
    dispatcher = DispatcherProcess(service)
    dispatcher.start()
    chaos = Chaos(service, cluster, dispatcher, rng)
    try:
        with ProcessWatch() as watch:
            ids = [service.client.submit(job(1, f"chaos-{n}"))["id"] for n in range(CHAOS_JOBS)]
            struck, ends = [], time.monotonic() + CHAOS_S
            while time.monotonic() < ends and not all(ended(service, i) for i in ids):
                time.sleep(rng.uniform(2, 5))
                struck.append(chaos.strike(set(ids)))
            print("chaos:", "; ".join(struck))
            wait_for(lambda: all(ended(service, i) for i in ids), timeout_s=240, what="every job to end")
    finally:
        dispatcher.kill()
    for job_id in ids:
        done = service.client.get(job_id)
        assert done["error_class"] in (None, "INFRA_LOST"), (job_id, done["error_class"], done["error_message"])
    assert all(most <= 1 for most in watch.most.values()), f"two attempts of one job alive at once: {watch.most}"
    check_invariants(service.stack.dispatcher.sessions, service.stack.tracker.tracking_uri, ids)
    assert not service.stack.tracker.open_runs()


def ended(service, job_id: str) -> bool:
    return service.client.get(job_id)["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")
