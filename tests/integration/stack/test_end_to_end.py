"""End to end on SQLite and PostgreSQL: REST submission → Ray execution → MLflow run and model."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from service.client import ApiError
from tests.integration.conftest import summed, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN = {
    "kind": "train",
    "preset": "digits-ascl",
    "model_name": "digits-e2e",
    "mlflow_experiment": "e2e runs",
    "tags": ["e2e"],
    "overrides": {
        "train.epochs": 2,
        "data.train_subset": 256,
        "eval.pgd_steps": 5,
        "eval.val_steps": 2,
        "eval.eps_sweep": [0.0, 0.1],
    },
}


@pytest.fixture(scope="module")
def trained(service):
    job = service.client.submit(TRAIN, idempotency_key="e2e-train")
    assert job["status"] == "QUEUED"
    return service.client.wait(job["id"], timeout_s=600)


def test_train_job_succeeds_with_run_metrics_artifacts_and_registered_model(service, trained):
    assert trained["status"] == "SUCCEEDED", trained["error_message"]
    assert trained["registered_model_version"] == "1"
    assert trained["attempts"] == 1
    result = trained["result"]
    assert result["epochs_completed"] == 2
    assert 0 < result["positive_fraction"] < 1
    assert result["test"]["examples"] == 300

    events = service.client.events(trained["id"])
    assert [e["to_status"] for e in events] == ["QUEUED", "CLAIMED", "SUBMITTED", "RUNNING", "SUCCEEDED"]
    assert service.client.metrics(trained["id"])["epochs"][-1]["epoch"] == 1
    assert trained["progress"]["images_per_s"] > 0

    assert trained["progress"]["phase"] == "ended"  # not "logging model" once the job has ended
    assert trained["error_class"] is None
    listed = service.client.list(tag="e2e")["items"]
    assert [job["mlflow_run_url"] for job in listed if job["id"] == trained["id"]] == [trained["mlflow_run_url"]]
    assert trained["mlflow_run_url"].endswith(f"/runs/{trained['mlflow_run_id']}")

    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    run = mlflow.get_run(trained["mlflow_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "e2e runs"
    assert run.info.status == "FINISHED"
    assert run.data.params["objective.neg_type"] == "leaked"
    assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "train_loss")] == [0, 1]
    assert "val_robust_acc" in run.data.metrics
    overhead = mlflow.get_metric_history(run.info.run_id, "tracking_overhead_fraction")
    assert [m.step for m in overhead] == [0, 1]  # MLflow + heartbeat time in the training thread, per epoch
    assert overhead[1].value > 0  # the second epoch carries the first epoch's MLflow log and heartbeat
    assert "test_clean_acc" in run.data.metrics
    artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert {"config.json", "report.json", "eps_sweep.png", "checkpoint", "logs"} <= artifacts
    version = mlflow.get_model_version("digits-e2e", "1")
    assert version.tags["ascl.job_id"] == trained["id"]
    assert float(version.tags["robust_acc"]) == pytest.approx(result["test"]["robust_acc"])
    assert version.run_id == run.info.run_id


def test_same_idempotency_key_returns_the_same_job(service, trained):
    again = service.client.submit(TRAIN, idempotency_key="e2e-train")
    assert again["id"] == trained["id"]
    with pytest.raises(ApiError) as info:
        service.client.submit({**TRAIN, "priority": 5}, idempotency_key="e2e-train")
    assert info.value.status == 409


@pytest.mark.parametrize("reference", ["version", "job"])
def test_eval_job_on_the_registered_model_logs_its_report(service, trained, reference):
    model = "models:/digits-e2e/1" if reference == "version" else trained["id"]
    job = service.client.submit(
        {
            "kind": "eval",
            "model": model,
            "overrides": {"eval.pgd_steps": 3, "eval.eps_sweep": [0.0, 0.2]},
            "resources": {"gpus": 1},  # the cluster's one logical GPU
        }
    )
    done = service.client.wait(job["id"], timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert "CUDA_VISIBLE_DEVICES='0'" in service.client.logs(job["id"])  # the GPU Ray assigned, no other
    report = done["result"]["report"]
    assert report["pgd_steps"] == 3
    assert [p["eps"] for p in report["eps_sweep"]] == [0.0, 0.2]
    assert report["clean_acc"] == pytest.approx(trained["result"]["test"]["clean_acc"])
    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    run = mlflow.get_run(done["mlflow_run_id"])
    assert run.data.tags["evaluated_version"] == "1"
    assert "report.json" in {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert done["registered_model_version"] is None


def test_cancel_a_running_job_stops_ray_and_kills_the_mlflow_run(service):
    job = service.client.submit({"preset": "digits-ascl", "overrides": {"train.epochs": 200}, "model_name": "c"})
    wait_for(
        lambda: (service.client.get(job["id"])["progress"] or {}).get("phase") == "training", what="the job to train"
    )
    assert service.client.cancel(job["id"])["status"] == "CANCELLING"
    done = service.client.wait(job["id"], timeout_s=120)
    assert done["status"] == "CANCELLED"
    assert done["registered_model_version"] is None
    submission = f"ascl-{job['id']}-a1"
    assert service.stack.cluster.status(submission) in ("STOPPED", "SUCCEEDED")
    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    # closed by the monitor as the job ends; a write from the dying worker is undone by the repair pass
    wait_for(lambda: mlflow.get_run(done["mlflow_run_id"]).info.status == "KILLED", timeout_s=30, what="KILLED")
    reasons = [e["to_status"] for e in service.client.events(job["id"])]
    assert reasons[-2:] == ["CANCELLING", "CANCELLED"]


def test_job_that_cannot_be_placed_waits_queued_and_cancels_at_once(service):
    with pytest.raises(ApiError) as info:  # one worker larger than any node: known at submission
        service.client.submit({"preset": "digits-ascl", "resources": {"cpus": 8}})
    assert (info.value.status, info.value.body["field"]) == (422, "resources.cpus")
    # two workers of one GPU each on a one-GPU cluster: each fits a node, the gang fits none today
    job = service.client.submit({"preset": "digits-ascl", "resources": {"gpus": 2}, "force_queue": True})
    wait_for(lambda: service.stack.dispatcher.cycles > 2, what="dispatcher cycles")
    waiting = service.client.get(job["id"])
    assert waiting["status"] == "QUEUED"
    assert waiting["pending_reason"] == "INFEASIBLE"  # no node can hold it until the cluster grows
    assert waiting["queue_position"] is None  # so it holds no place in front of jobs that fit
    assert service.client.cancel(job["id"])["status"] == "CANCELLED"


def test_readiness_and_prometheus_metrics(service, trained):
    ready = service.client.http.get("/readyz").json()
    assert ready == {"ready": True, "checks": {"database": True, "ray": True, "mlflow": True}}
    text = service.client.http.get("/metrics").text
    assert 'ascl_jobs{queue="default",status="SUCCEEDED"}' in text
    assert "ascl_dispatcher_cycles_total" in text
    logs = service.client.logs(trained["id"])
    assert "attempt.start" in logs
    assert "CUDA_VISIBLE_DEVICES=''" in logs  # a job that reserved no GPU sees none of the node's


def test_max_runtime_times_the_job_out(service):
    job = service.client.submit({"preset": "digits-ascl", "overrides": {"train.epochs": 200}, "max_runtime_s": 3})
    done = service.client.wait(job["id"], timeout_s=120)
    assert done["status"] == "TIMED_OUT"
    assert done["error_class"] == "TIMEOUT"
    wait_for(
        lambda: service.stack.cluster.status(f"ascl-{job['id']}-a1") not in ("PENDING", "RUNNING"),
        what="the Ray execution to stop",
    )


def test_retry_with_resume_continues_from_the_checkpoint(service):
    job = service.client.submit(
        {
            "preset": "digits-pgdat",
            "model_name": "resumed",
            "overrides": {
                "train.epochs": 40,
                "data.train_subset": 256,
                "eval.pgd_steps": 2,
                "eval.val_steps": 1,
                "eval.eps_sweep": [],
            },
        }
    )
    wait_for(
        lambda: (service.client.get(job["id"])["progress"] or {}).get("checkpoint_epoch", -1) >= 1, what="a checkpoint"
    )
    service.client.cancel(job["id"])
    assert service.client.wait(job["id"], timeout_s=120)["status"] == "CANCELLED"
    retried = service.client.retry(job["id"], overrides={"train.epochs": 4}, resume=True)
    assert retried["retried_from"] == job["id"]
    done = service.client.wait(retried["id"], timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["result"]["resumed_from_epoch"] >= 2
    assert done["result"]["epochs_completed"] == 4
    assert done["registered_model_version"] is not None


def test_resources_are_released_after_cancel(service):
    cluster = service.stack.cluster
    total = summed(cluster)[1]["CPU"]
    job = service.client.submit({"preset": "digits-ascl", "overrides": {"train.epochs": 200}, "resources": {"cpus": 2}})
    wait_for(lambda: service.client.get(job["id"])["status"] == "RUNNING", what="RUNNING")
    assert summed(cluster)[0]["CPU"] <= total - 2
    service.client.cancel(job["id"])
    assert service.client.wait(job["id"], timeout_s=120)["status"] == "CANCELLED"
    wait_for(
        lambda: summed(cluster)[0]["CPU"] == total,
        timeout_s=60,
        what="the CPUs to be free again",
    )


def test_cli_and_log_stream_against_the_running_service(service, trained):
    import json
    import os
    import socket
    import subprocess
    import sys

    def ascl(*args):
        run = subprocess.run(
            [sys.executable, "-m", "ascl.cli", "jobs", *args, "--api", service.settings.api_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "ASCL_TOKEN": service.stack.admin_token},
        )
        return run.returncode, run.stdout, run.stderr

    code, out, _ = ascl("get", trained["id"], "--json")
    assert code == 0
    assert json.loads(out)["status"] == "SUCCEEDED"
    code, out, _ = ascl("get", trained["id"])
    assert "status     SUCCEEDED" in out
    assert f"models:/digits-e2e/{trained['registered_model_version']}" in out
    code, out, _ = ascl("submit", "--preset", "digits-ascl", "--set", "train.epochs=1", "--dry-run")
    assert (code, json.loads(out)["pending_reason"]) == (0, "DRY_RUN")
    code, _, err = ascl("submit", "--preset", "digits-ascl", "--set", "attack.eps=-1")
    assert code == 2
    assert "overrides.attack.eps" in err
    code, out, _ = ascl("list", "--status", "succeeded", "--tag", "e2e")
    assert out.splitlines()[0].split() == [
        "ID",
        "NAME",
        "KIND",
        "STATUS",
        "QUEUE",
        "POSITION/REASON",
        "PROGRESS",
        "AGE",
    ]
    assert trained["id"][:8] in out
    code, out, _ = ascl("logs", trained["id"], "--follow")
    assert code == 0
    assert "attempt.end" in out
    run = MlflowClient(service.stack.tracker.tracking_uri).get_run(trained["mlflow_run_id"])
    assert f"system/{socket.gethostname()}/cpu_utilization_percentage" in run.data.metrics  # however short the job
