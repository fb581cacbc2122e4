"""Crash recovery with a real Ray and MLflow: the dispatcher is driven by hand so each test can
"kill" it at an exact line, by starting a fresh Dispatcher as a restarted process would."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from control import repair
from control.dispatcher import Dispatcher
from service.db import session_scope
from service.jobs import attempts, store
from service.jobs.status import JobStatus
from tests.integration.conftest import start_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = {
    "preset": "digits-pgdat",
    "model_name": "recovery",
    "overrides": {
        "train.epochs": 2,
        "data.train_subset": 256,
        "eval.pgd_steps": 2,
        "eval.val_steps": 1,
        "eval.eps_sweep": [],
    },
}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("recovery"), "sqlite", dispatcher=False) as running:
        yield running


def restarted(service, name: str) -> Dispatcher:
    """A new dispatcher process: same database, Ray and MLflow, no memory of the old one."""
    old = service.stack.dispatcher
    return Dispatcher(old.sessions, old.cluster, old.tracker, old.settings.model_copy(update={"dispatcher_name": name}))


def drive(dispatcher: Dispatcher, client, job_id: str, *, timeout_s: float = 300) -> dict:
    def finished():
        dispatcher.cycle()
        job = client.get(job_id)
        return job if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT") else None

    return wait_for(finished, timeout_s=timeout_s, poll_s=0.3, what=f"job {job_id} to finish")


def claim_only(service, job_id: str) -> None:
    """What a dispatcher that crashed right after committing its claim leaves behind."""
    with session_scope(service.stack.dispatcher.sessions) as session:
        job = store.get_job(session, job_id)
        assert attempts.claim(
            session, job, dispatcher="crashed", checkpoint_dir=str(service.settings.checkpoint_root / job_id)
        )


def test_dispatcher_killed_between_claim_and_submit(service):
    job = service.client.submit(QUICK)
    claim_only(service, job["id"])
    time.sleep(service.settings.claim_lease_s + 0.1)
    done = drive(restarted(service, "d-after-claim"), service.client, job["id"])
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["attempts"] == 2  # the abandoned claim and the real one
    assert service.stack.cluster.status(f"ascl-{job['id']}-a1") is None  # never reached Ray
    reasons = [e["reason"] for e in service.client.events(job["id"])]
    assert any("claim expired" in r and "no retry used" in r for r in reasons)


def test_dispatcher_killed_after_ray_submit_before_the_database_update(service, monkeypatch):
    job = service.client.submit(QUICK)
    real_transition = store.transition

    def crash_on_submitted(session, job_id, to, **kwargs):
        if to == JobStatus.SUBMITTED:
            raise SystemExit("dispatcher killed")
        return real_transition(session, job_id, to, **kwargs)

    monkeypatch.setattr(store, "transition", crash_on_submitted)
    with pytest.raises(SystemExit):
        restarted(service, "d-doomed").dispatch()
    monkeypatch.setattr(store, "transition", real_transition)
    assert service.client.get(job["id"])["status"] == "CLAIMED"
    assert service.stack.cluster.status(f"ascl-{job['id']}-a1") is not None  # Ray has it

    done = drive(restarted(service, "d-adopter"), service.client, job["id"])
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["attempts"] == 1  # adopted, not started twice
    assert any("adopted" in e["reason"] for e in service.client.events(job["id"]))


def _worker_pid(job_id: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"workers.entrypoint" in cmdline and f"ASCL_JOB_ID={job_id}".encode() in environ:
            return int(entry.name)
    return None


def test_worker_killed_mid_training_is_retried_and_resumes_from_its_checkpoint(service):
    job = service.client.submit({**QUICK, "overrides": {**QUICK["overrides"], "train.epochs": 12}})
    dispatcher = restarted(service, "d-background")
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop, wake), kwargs={"interval_s": 0.3}, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: (service.client.get(job["id"])["progress"] or {}).get("checkpoint_epoch", -1) >= 1,
            what="a checkpoint of epoch 2",
        )
        pid = wait_for(lambda: _worker_pid(job["id"]), what="the worker process")
        with session_scope(dispatcher.sessions) as session:
            first = attempts.current_attempt(session, store.get_job(session, job["id"]))
            stale = (first.attempt_no, first.fencing_token)
        os.kill(pid, signal.SIGKILL)
        done = service.client.wait(job["id"], timeout_s=300)
    finally:
        stop.set()
        wake.set()
        thread.join(timeout=30)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["attempts"] == 2
    assert done["result"]["resumed_from_epoch"] >= 2
    assert done["result"]["epochs_completed"] == 12
    reasons = [e["reason"] for e in service.client.events(job["id"])]
    assert any(r.startswith("INFRA_LOST") and "retry 1/3" in r for r in reasons)

    refused = service.client.http.post(
        f"/api/v1/internal/jobs/{job['id']}/attempts/{stale[0]}/heartbeat",
        headers={"X-Attempt-Token": stale[1]},
        json={"progress": {"step": 1}},
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "StaleAttempt"


def test_a_job_ray_refuses_claim_after_claim_fails_instead_of_cycling(service, monkeypatch):
    """Ray answers capacity queries but its job server refuses every submission (fault injected at
    the submit call): each claim expires and is requeued, until the budget of expiries is spent."""
    dispatcher = restarted(service, "d-refused")
    settings = dispatcher.settings.model_copy(update={"max_claim_expiries": 2})
    dispatcher = Dispatcher(dispatcher.sessions, dispatcher.cluster, dispatcher.tracker, settings)

    def refuse(*_args, **_kwargs):
        raise ConnectionError("job server at 127.0.0.1:8265 refused the connection")

    monkeypatch.setattr(dispatcher.cluster, "submit", refuse)
    job = service.client.submit(QUICK)

    def cycle_after_lease():
        dispatcher.cycle()
        time.sleep(service.settings.claim_lease_s)
        return service.client.get(job["id"])

    done = wait_for(
        lambda: (j := cycle_after_lease())["status"] == "FAILED" and j, timeout_s=60, what="the job to fail"
    )
    assert done["attempts"] == 2
    assert done["error_class"] == "SUBMIT_FAILED"
    assert "2 consecutive claims never reached Ray" in done["error_message"]
    assert "refused the connection" in done["error_message"]
    reasons = [e["reason"] for e in service.client.events(job["id"])]
    assert any("requeued, no retry used (1/2)" in r and "refused the connection" in r for r in reasons)
    assert service.stack.cluster.status(f"ascl-{job['id']}-a2") is None


def test_cancel_while_claimed_never_reaches_ray(service):
    job = service.client.submit(QUICK)
    claim_only(service, job["id"])
    assert service.client.cancel(job["id"])["status"] == "CANCELLING"
    done = drive(restarted(service, "d-cancel"), service.client, job["id"])
    assert done["status"] == "CANCELLED"
    assert service.stack.cluster.status(f"ascl-{job['id']}-a1") is None


def test_an_error_in_the_job_fails_it_without_retry(service, tmp_path):
    job = service.client.submit(
        {
            **QUICK,
            "overrides": {**QUICK["overrides"], "data.dataset": "mnist", "data.data_dir": str(tmp_path / "missing")},
        }
    )
    done = drive(restarted(service, "d-user-error"), service.client, job["id"])
    assert done["status"] == "FAILED"
    assert done["attempts"] == 1
    assert done["error_class"] == "USER_ERROR"
    assert "data.download=true" in done["error_message"]


def test_repair_stops_orphaned_ray_executions_and_closes_runs_of_finished_jobs(service):
    import sys

    from mlflow import MlflowClient

    cluster = service.stack.cluster
    orphan = f"ascl-orphan{int(time.time())}-a1"  # ours by metadata, but no job wants it
    cluster.submit(
        orphan,
        entrypoint=f"{sys.executable} -c 'import time; time.sleep(120)'",
        env={},
        resources={"cpus": 0.1},
        metadata={"service": "ascl", "job_id": "gone", "attempt": "1"},
    )
    wait_for(lambda: cluster.status(orphan) == "RUNNING", what="the orphan to run")

    job = service.client.submit(QUICK)  # a job that ended while its MLflow run was left open
    tracker = service.stack.tracker
    _, run_id = tracker.ensure_run(experiment="ascl", job_id=job["id"], run_name="left open", tags={})
    MlflowClient(tracker.tracking_uri).update_run(run_id, status="RUNNING")
    service.client.cancel(job["id"])

    restarted(service, "d-repair").repair()
    wait_for(lambda: cluster.status(orphan) == "STOPPED", what="the orphan to be stopped")
    assert MlflowClient(tracker.tracking_uri).get_run(run_id).info.status == "KILLED"


def settled_repair(dispatcher: Dispatcher, monkeypatch) -> None:
    """A repair pass with no retention, once Ray's job monitor has surely seen the end (it looks
    each second; the service waits RAY_SETTLE_S, here shortened to keep the test quicker)."""
    monkeypatch.setattr(repair, "RAY_SETTLE_S", 10.0)
    time.sleep(10.0)
    no_retention = dispatcher.settings.model_copy(update={"ray_job_retention_s": 0})
    Dispatcher(dispatcher.sessions, dispatcher.cluster, dispatcher.tracker, no_retention).repair()


def test_repair_deletes_ended_ray_executions_and_the_log_tail_stays_readable(service, tmp_path, monkeypatch):
    job = service.client.submit(
        {**QUICK, "overrides": {**QUICK["overrides"], "data.dataset": "mnist", "data.data_dir": str(tmp_path)}}
    )  # a user error: the quickest attempt that leaves a Ray execution with a log behind
    dispatcher = restarted(service, "d-retention")
    assert drive(dispatcher, service.client, job["id"])["status"] == "FAILED"
    submission = f"ascl-{job['id']}-a1"
    live = service.client.logs(job["id"])
    assert "data.download=true" in live  # read from Ray

    dispatcher.repair()  # within the retention (an hour by default): kept
    assert service.stack.cluster.status(submission) == "FAILED"
    no_retention = dispatcher.settings.model_copy(update={"ray_job_retention_s": 0})
    # kept still: Ray's job monitor (each second) would write back a record deleted this soon
    Dispatcher(dispatcher.sessions, dispatcher.cluster, dispatcher.tracker, no_retention).repair()
    assert service.stack.cluster.status(submission) == "FAILED"

    settled_repair(dispatcher, monkeypatch)
    assert service.stack.cluster.status(submission) is None  # Ray has forgotten it
    time.sleep(2)
    assert service.stack.cluster.status(submission) is None  # and its monitor did not bring it back
    kept = service.client.logs(job["id"])
    assert "data.download=true" in kept
    assert kept.splitlines() == live.splitlines()[-len(kept.splitlines()) :]


def test_repair_recovers_a_log_tail_lost_in_a_crash_before_deleting_the_execution(service, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from control.finishing import Finisher

    job = service.client.submit(
        {**QUICK, "overrides": {**QUICK["overrides"], "data.dataset": "mnist", "data.data_dir": str(tmp_path)}}
    )
    with monkeypatch.context() as crash:  # the monitor dies right after the terminal transition
        crash.setattr(Finisher, "keep_log_tail", lambda *_args, **_kwargs: None)
        done = drive(restarted(service, "d-crash-tail"), service.client, job["id"])
    assert done["status"] == "FAILED"
    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    assert not mlflow.list_artifacts(done["mlflow_run_id"], "logs")

    settled_repair(restarted(service, "d-recover-tail"), monkeypatch)
    assert service.stack.cluster.status(f"ascl-{job['id']}-a1") is None
    assert "data.download=true" in service.client.logs(job["id"])  # the tail was kept before the delete
    assert [a.path for a in mlflow.list_artifacts(done["mlflow_run_id"], "logs")] == ["logs/attempt-1.log"]


def test_reporter_sends_each_epoch_once_in_order_and_relays_a_cancel(service):
    """The worker's reporter against the real API and MLflow store: epoch metrics leave the training
    thread (heartbeat thread, MLflow's logging thread), flush() delivers all of them in order, and
    the API's "stop" after a cancel reaches the training loop's stop check."""
    import mlflow
    from mlflow import MlflowClient

    from ascl.training.callbacks import EpochSummary
    from workers.api_client import ApiClient, AttemptIdentity
    from workers.reporting import ServiceReporter

    job = service.client.submit({**QUICK, "overrides": {**QUICK["overrides"], "train.epochs": 5}})  # as reported
    claim_only(service, job["id"])
    with session_scope(service.stack.dispatcher.sessions) as session:
        token = attempts.current_attempt(session, store.get_job(session, job["id"])).fencing_token
    identity = AttemptIdentity(api_url=service.settings.api_url, job_id=job["id"], attempt=1, token=token)
    tracker = service.stack.tracker
    _, run_id = tracker.ensure_run(experiment="ascl", job_id=job["id"], run_name="reporter", tags={})

    def epoch(n: int) -> EpochSummary:
        return EpochSummary(epoch=n, epochs=5, lr=0.1, seconds=1.0, images_per_s=100.0, train={"loss": 1 / (n + 1)})

    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracker.tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id), ServiceReporter(ApiClient(identity), interval_s=60) as reporter:
            for n in range(4):
                reporter.on_epoch_end(epoch(n))
            reporter.flush()
            assert [e["epoch"] for e in service.client.metrics(job["id"])["epochs"]] == [0, 1, 2, 3]
            history = MlflowClient(tracker.tracking_uri).get_metric_history(run_id, "train_loss")
            assert sorted(m.step for m in history) == [0, 1, 2, 3]

            assert not reporter.should_stop()
            service.client.cancel(job["id"])
            reporter.on_epoch_end(epoch(4))  # its heartbeat goes at once, not after the 60 s interval
            wait_for(reporter.should_stop, timeout_s=10, what="the cancel to reach the reporter")
    finally:
        mlflow.set_tracking_uri(previous_uri)
