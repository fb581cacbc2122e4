"""Data-parallel jobs through Ray Train's TorchTrainer, on CPU workers with gloo: a 2-worker job
through the real service reaches SUCCEEDED with its MLflow run and registered model, and cancelling
one gives every reserved resource back. (That 2 workers x 32 take 1 worker x 64's step is
tests/ascl/test_distributed.py's, with the process group Ray Train would initialise.)"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from ray.util.state import list_actors, list_placement_groups

from tests.integration.conftest import summed, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GANG = {"cpus": 1, "workers": 2}
TINY = {
    "data.train_subset": 256,
    "eval.pgd_steps": 2,
    "eval.val_steps": 1,
    "eval.eps_sweep": [],
    "eval.autoattack": "none",
}


@pytest.fixture(scope="module")
def service(embedded):
    # its 4 logical CPUs: room to see that a gang of two 1-CPU workers reserves 2, not 3 (an entrypoint CPU)
    assert embedded.settings.local_ray_num_cpus == 4
    return embedded


def test_two_worker_job_succeeds_with_its_run_and_model_and_frees_the_gang(service):
    body = {
        "preset": "digits-ascl",
        "model_name": "digits-gang",
        "auto_evaluate": False,  # what this test counts is the gang's own reservation
        "overrides": {**TINY, "train.epochs": 2},
        "resources": GANG,
    }
    job = service.client.submit(body)
    done = service.client.wait(job["id"], timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["resources"]["workers"] == 2
    assert done["registered_model_version"] == "1"
    assert done["result"]["epochs_completed"] == 2
    assert [e["epoch"] for e in service.client.metrics(job["id"])["epochs"]] == [0, 1]  # rank 0 alone reports

    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    run = mlflow.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "train_loss")] == [0, 1]
    assert mlflow.get_model_version("digits-gang", "1").run_id == run.info.run_id

    logs = service.client.logs(job["id"])
    assert "gang.worker rank=1" in logs
    assert "gang.worker rank=0" in logs
    checkpoints = service.settings.checkpoint_root / job["id"]
    assert (checkpoints / "ray-train" / "attempt-1").is_dir()  # Ray Train's storage under the job's
    _wait_for_free_cluster(service)


def test_cancelling_a_running_two_worker_job_frees_every_resource(service):
    body = {"preset": "digits-ascl", "overrides": {**TINY, "train.epochs": 200}, "resources": GANG}
    job = service.client.submit(body)
    wait_for(  # rank 0's heartbeats, sent from inside the started gang
        lambda: (service.client.get(job["id"]).get("progress") or {}).get("phase") == "training",
        timeout_s=300,
        what="the gang training",
    )
    cluster = service.stack.cluster
    free, total = summed(cluster)
    assert free["CPU"] == total["CPU"] - 2  # the gang's two bundles
    service.client.cancel(job["id"])
    cancelled = service.client.wait(job["id"], timeout_s=120)
    assert cancelled["status"] == "CANCELLED"
    _wait_for_free_cluster(service)


def _wait_for_free_cluster(service):
    """Every CPU and GPU back, no placement group left, no Ray Train actor alive."""
    cluster = service.stack.cluster

    def free():
        available, total = summed(cluster)
        return available == total

    wait_for(free, timeout_s=60, what="the gang's resources to come back")
    groups = list_placement_groups(address=cluster.dashboard_url, detail=True)
    assert all(group.state == "REMOVED" for group in groups)
    alive = list_actors(filters=[("state", "=", "ALIVE")], address=cluster.dashboard_url)
    assert [actor.class_name for actor in alive if "Train" in actor.class_name] == []
