"""The service on a Ray cluster of several nodes (a head and two 1-CPU worker nodes on this machine,
each its own `ray start` with its own ports), joined by address as `ascl serve --ray-address` does:
jobs spread over the nodes by their resources, and a node lost mid-training (its raylet killed) has
its job retried on another node, resuming from the checkpoint on storage that every node reaches."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.conftest import start_service, wait_for
from tests.integration.invariants import ProcessWatch, check_invariants
from tests.integration.ray_nodes import start_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    info = service.stack.cluster.client.get_job_info(f"ascl-{job_id}-a{attempt}")
    if str(info.status.value) != "RUNNING" or not info.driver_node_id:
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
    assert any(r.startswith("INFRA_LOST") and "node" in r and "retry 1/3" in r for r in reasons), reasons
    assert (shared / long / "last.pt").is_file()  # the checkpoint lives on the shared storage
    assert watch.most[long] == 1, "two attempts of one job were alive at once"
    assert watch.seen[long] == {1, 2}
    check_invariants(service.stack.dispatcher.sessions, service.stack.tracker.tracking_uri, [long, short])
    run = MlflowClient(service.stack.tracker.tracking_uri).get_run(done["mlflow_run_id"])
    models = MlflowClient(service.stack.tracker.tracking_uri).search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert len(models) == 1  # one model per job, whatever number of attempts ran
