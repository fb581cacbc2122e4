"""The sweep controller against a real database (SQLite and PostgreSQL), a real Optuna study in it and
a real MLflow store. Trial jobs are driven by hand through the job store, as the dispatcher and the
workers would drive them, so every rule is checked in seconds: lazy creation under the concurrency,
the grid's length, telling Optuna, pruning, the failure budget, raising max_trials while it runs,
crash recovery, and the end with the best trial and the MLflow summary."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from control.sweeps import SweepController
from control.tracking import Tracker
from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.db.models import Job
from service.jobs import store
from service.jobs.status import JobStatus
from service.settings import ServiceSettings
from service.sweeps import records
from tests.conftest import bearer, make_token

GRID = {
    "name": "grid",
    "base": {"preset": "digits-ascl", "overrides": {"train.epochs": 4}},
    "space": {"objective.temperature": {"values": [0.1, 0.2]}, "attack.eps": {"values": [0.1, 0.2]}},
    "algorithm": "grid",
    "objective": [{"metric": "val.robust_acc", "mode": "max"}],
    "max_trials": 10,
    "max_concurrency": 2,
    "max_failed_trials": 2,
}


@pytest.fixture
def world(sessions, database_url, tmp_path, new_mlflow_store):
    settings = ServiceSettings(data_dir=tmp_path, database_url=database_url)
    tracker = Tracker(new_mlflow_store(tmp_path), artifact_root=(tmp_path / "artifacts").as_uri())
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as api:
        yield api, SweepController(sessions, tracker, settings), tracker


def trial_jobs(sessions, sweep_id):
    with session_scope(sessions) as session:
        return [(job.id, job.trial_number, job.status, dict(job.spec)) for job in records.trials(session, sweep_id)]


def run_and_finish(sessions, job_id, *, robust: list[float], status=JobStatus.SUCCEEDED):
    """What the dispatcher and the worker do to a trial: it runs, reports epochs, and ends."""
    with session_scope(sessions) as session:
        for target in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, job_id, target, actor="test", reason="driven")
        job = session.get(Job, job_id)
        job.metrics_history = [
            {
                "epoch": e,
                "epochs": 4,
                "lr": 0.1,
                "seconds": 1.0,
                "images_per_s": 1.0,
                "train": {"loss": 1.0},
                "val": {"robust_acc": v},
            }
            for e, v in enumerate(robust)
        ]
        best = max(range(len(robust)), key=robust.__getitem__) if robust else None
        job.result = {"best_epoch": best, "test": {"robust_acc": max(robust) if robust else None}}
        if status is not None:
            store.transition(session, job_id, status, actor="test", reason="driven")


def test_a_grid_runs_exactly_its_points_never_more_than_the_concurrency_and_ends_with_the_best(world, sessions):
    api, controller, tracker = world
    sweep = api.post("/api/v1/sweeps", json=GRID).json()
    seen_active = []
    for _ in range(6):
        controller.advance(sweep["id"])
        jobs = trial_jobs(sessions, sweep["id"])
        seen_active.append(sum(status not in ("SUCCEEDED", "FAILED", "CANCELLED") for _, _, status, _ in jobs))
        for job_id, number, status, _ in jobs:
            if status == "QUEUED":
                run_and_finish(sessions, job_id, robust=[0.1, 0.2 + 0.1 * number])
    jobs = trial_jobs(sessions, sweep["id"])
    assert len(jobs) == 4
    assert max(seen_active) == 2
    points = {(spec["objective"]["temperature"], spec["attack"]["eps"]) for *_, spec in jobs}
    assert points == {(0.1, 0.1), (0.1, 0.2), (0.2, 0.1), (0.2, 0.2)}
    done = api.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert done["status"] == "SUCCEEDED"
    assert done["best"]["best_trial"]["trial"] == 3
    assert done["best"]["best_trial"]["values"] == [pytest.approx(0.5)]
    run = MlflowClient(tracker.tracking_uri).get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_val_robust_acc"] == pytest.approx(0.5)
    assert run.data.params["algorithm"] == "grid"
    summary = {a.path for a in MlflowClient(tracker.tracking_uri).list_artifacts(run.info.run_id, "summary")}
    assert summary == {"summary/trials.csv", "summary/objective.png"}
    trials = api.get(f"/api/v1/sweeps/{sweep['id']}/trials").json()
    assert [t["values"] for t in trials] == [[pytest.approx(0.2 + 0.1 * n)] for n in range(4)]


def test_a_sweep_named_to_the_limit_gets_trials_named_within_the_job_name_limit(world, sessions):
    """'<name> #<n>' is cut to the job name's 200 characters, keeping the number (PostgreSQL refused
    the longer name at every pass, and the sweep never had a trial)."""
    api, controller, _ = world
    sweep = api.post("/api/v1/sweeps", json={**GRID, "name": "s" * 200}).json()
    controller.advance(sweep["id"])
    with session_scope(sessions) as session:
        names = sorted((job.trial_number, job.name) for job in records.trials(session, sweep["id"]))
    assert [number for number, _ in names] == [0, 1]
    assert all(len(name) == 200 and name.endswith(f"s #{number}") for number, name in names)


def test_the_median_rule_prunes_a_hopeless_trial(world, sessions):
    api, controller, _ = world
    body = {
        **GRID,
        "algorithm": "random",
        "space": {"optim.lr": {"values": [0.05, 1e-9]}},
        "max_trials": 3,
        "max_concurrency": 3,
        "early_stopping": {"rule": "median", "metric": "val.robust_acc", "grace_epochs": 1, "min_trials": 2},
    }
    sweep = api.post("/api/v1/sweeps", json=body).json()
    controller.advance(sweep["id"])
    jobs = trial_jobs(sessions, sweep["id"])
    assert len(jobs) == 3
    good, other, hopeless = (job_id for job_id, *_ in jobs)
    run_and_finish(sessions, good, robust=[0.3, 0.5, 0.6, 0.7])
    run_and_finish(sessions, other, robust=[0.3, 0.45, 0.55, 0.65])
    controller.advance(sweep["id"])  # two trials complete: the median is known
    run_and_finish(sessions, hopeless, robust=[0.0, 0.0, 0.0], status=None)  # still running, going nowhere
    controller.advance(sweep["id"])
    with session_scope(sessions) as session:
        job = session.get(Job, hopeless)
        assert job.status == JobStatus.CANCELLING
        assert job.error_class == "PRUNED"
        assert "pruned by the median rule at epoch 2" in job.error_message
        reasons = [e.reason for e in store.events(session, hopeless)]
        assert "pruned by the median rule at epoch 2 (val.robust_acc)" in reasons
        store.transition(session, hopeless, JobStatus.CANCELLED, actor="test", reason="its attempt stopped")
    assert api.get(f"/api/v1/sweeps/{sweep['id']}").json()["trials"] == {"SUCCEEDED": 2, "PRUNED": 1}
    shown = {t["job_id"]: t["status"] for t in api.get(f"/api/v1/sweeps/{sweep['id']}/trials").json()}
    assert shown[hopeless] == "PRUNED"  # not one of the trials cancelled by hand


def test_the_failure_budget_stops_the_sweep_and_cancels_its_queued_trials(world, sessions):
    api, controller, _ = world
    sweep = api.post("/api/v1/sweeps", json={**GRID, "max_concurrency": 3}).json()
    controller.advance(sweep["id"])
    first, second, third = (job_id for job_id, *_ in trial_jobs(sessions, sweep["id"]))
    run_and_finish(sessions, first, robust=[], status=JobStatus.FAILED)
    run_and_finish(sessions, second, robust=[], status=JobStatus.FAILED)
    controller.advance(sweep["id"])
    stopped = api.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert stopped["status"] == "FAILED"  # nothing left running: it ends in the same pass
    assert "2 trials failed (max_failed_trials 2)" in stopped["reason"]
    with session_scope(sessions) as session:
        assert session.get(Job, third).status == JobStatus.CANCELLED
    controller.advance(sweep["id"])  # an ended sweep is left alone
    assert len(trial_jobs(sessions, sweep["id"])) == 3  # no trial was added after the stop


def test_raising_max_trials_on_a_running_sweep_adds_trials(world, sessions):
    api, controller, _ = world
    body = {**GRID, "algorithm": "random", "space": {"attack.eps": {"low": 0.1, "high": 0.3}}, "max_trials": 2}
    sweep = api.post("/api/v1/sweeps", json=body).json()
    controller.advance(sweep["id"])
    assert api.patch(f"/api/v1/sweeps/{sweep['id']}", json={"max_trials": 4}).status_code == 200
    for job_id, *_ in trial_jobs(sessions, sweep["id"]):
        run_and_finish(sessions, job_id, robust=[0.2])
    controller.advance(sweep["id"])
    assert len(trial_jobs(sessions, sweep["id"])) == 4


def test_a_trial_asked_but_never_written_gets_its_job_after_a_crash(world, sessions, monkeypatch):
    api, controller, _ = world
    sweep = api.post("/api/v1/sweeps", json=GRID).json()

    def crash(*_args, **_kwargs):
        raise RuntimeError("the control plane died here")

    with monkeypatch.context() as patched:  # the ask is committed by Optuna, the job is not
        patched.setattr(store, "add_job", crash)
        with pytest.raises(RuntimeError):
            controller.advance(sweep["id"])
    assert trial_jobs(sessions, sweep["id"]) == []
    controller.advance(sweep["id"])
    jobs = trial_jobs(sessions, sweep["id"])
    assert sorted(number for _, number, *_ in jobs) == [0, 1]  # the orphaned trial 0 and one more


def test_a_summary_that_failed_is_written_by_the_next_pass(world, sessions, monkeypatch):
    api, controller, tracker = world
    sweep = api.post("/api/v1/sweeps", json={**GRID, "max_trials": 1, "max_concurrency": 1}).json()
    controller.advance(sweep["id"])
    (job_id, *_), *_ = trial_jobs(sessions, sweep["id"])
    run_and_finish(sessions, job_id, robust=[0.4])

    def down(*_args, **_kwargs):
        raise OSError("the tracking server is down")

    with monkeypatch.context() as patched:
        patched.setattr(tracker, "finish_sweep_run", down)
        with pytest.raises(OSError, match="is down"):
            controller.advance(sweep["id"])
    ended = api.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert ended["status"] == "SUCCEEDED"
    assert MlflowClient(tracker.tracking_uri).get_run(ended["mlflow_run_id"]).info.status == "RUNNING"
    controller.cycle()
    assert MlflowClient(tracker.tracking_uri).get_run(ended["mlflow_run_id"]).info.status == "FINISHED"


RANDOM = {
    **GRID,
    "name": "wide",
    "space": {"optim.lr": {"low": 0.001, "high": 0.1, "log": True}},
    "algorithm": "random",
    "max_trials": 50,
    "max_concurrency": 50,
}


def test_a_pass_creates_a_few_trials_and_never_past_the_owners_queued_limit(
    sessions, database_url, tmp_path, new_mlflow_store
):
    """A sweep of 50 trials at once fills in over passes (a pass is part of the dispatcher's cycle),
    and its trials stop where the owner's queued jobs reach the limit any submission meets."""
    settings = ServiceSettings(data_dir=tmp_path, database_url=database_url, max_queued_per_user=6)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    tracker = Tracker(new_mlflow_store(tmp_path), artifact_root=(tmp_path / "artifacts").as_uri())
    controller = SweepController(sessions, tracker, settings)
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as api:
        assert api.post("/api/v1/jobs", json={"preset": "digits-ascl"}).status_code == 201
        sweep = api.post("/api/v1/sweeps", json=RANDOM).json()
    counts = []
    for _ in range(3):
        controller.cycle()
        counts.append(len(trial_jobs(sessions, sweep["id"])))
    assert counts == [4, 5, 5]  # 4 a pass; then 1 job + 5 trials = the limit of 6


def test_passes_reach_every_sweep_in_turn_within_their_time_budget(world, sessions, monkeypatch):
    api, controller, _ = world
    ids = sorted(api.post("/api/v1/sweeps", json={**GRID, "name": f"s{i}"}).json()["id"] for i in range(3))
    monkeypatch.setattr("control.sweeps.PASS_BUDGET_S", 0.0)  # a pass advances one sweep, then stops
    reached = []
    for _ in range(4):
        controller.cycle()
        reached.append(controller._reached)
    assert reached == [*ids, ids[0]]


def test_a_stored_request_this_version_refuses_stops_its_sweep_once_with_the_reason(world, sessions, caplog):
    api, controller, tracker = world
    sweep = api.post("/api/v1/sweeps", json={**GRID, "max_concurrency": 2}).json()
    controller.advance(sweep["id"])
    running, queued = (job_id for job_id, *_ in trial_jobs(sessions, sweep["id"]))
    with session_scope(sessions) as session:  # stored by an older version: a name it allowed
        for target in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, running, target, actor="test", reason="driven")
        stored = records.get(session, sweep["id"])
        stored.request = {**stored.request, "name": "line\u2028separator"}
    for _ in range(3):
        controller.cycle()
    stopping = api.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert stopping["status"] == "STOPPING"  # as any stopped sweep, until its running trial has ended
    assert "no longer reads under this version's rules (name:" in stopping["reason"]
    with session_scope(sessions) as session:
        assert session.get(Job, queued).status == JobStatus.CANCELLED
        store.transition(session, running, JobStatus.CANCELLED, actor="test", reason="its attempt ended")
    controller.cycle()
    ended = api.get(f"/api/v1/sweeps/{sweep['id']}").json()
    assert (ended["status"], ended["reason"]) == ("FAILED", stopping["reason"])
    assert ended["finished_at"] is not None
    assert MlflowClient(tracker.tracking_uri).get_run(ended["mlflow_run_id"]).info.status == "FAILED"
    controller.cycle()  # ended and closed: left alone
    logged = [r.message.split(" ")[0] for r in caplog.records if r.message.startswith("sweep.")]
    assert logged.count("sweep.unreadable") == 1  # once, not at every pass
    assert "sweep.advance_failed" not in logged


def test_a_request_with_a_field_this_version_does_not_know_waits_unless_cancelled(world, sessions, caplog):
    api, controller, _ = world
    sweep = api.post("/api/v1/sweeps", json=GRID).json()
    with session_scope(sessions) as session:
        stored = records.get(session, sweep["id"])
        stored.request = {**stored.request, "a_later_option": True}
    for _ in range(3):
        controller.cycle()
    assert api.get(f"/api/v1/sweeps/{sweep['id']}").json()["status"] == "RUNNING"
    assert trial_jobs(sessions, sweep["id"]) == []
    warned = [r for r in caplog.records if r.message.startswith("sweep.unknown_field")]
    assert len(warned) == 1
    assert api.post(f"/api/v1/sweeps/{sweep['id']}/cancel", json={}).status_code == 200
    controller.cycle()  # its owner's cancel still ends it
    assert api.get(f"/api/v1/sweeps/{sweep['id']}").json()["status"] == "CANCELLED"


def test_trials_whose_parameters_make_no_config_together_fail_and_stop_the_sweep(world, sessions):
    """Each value is valid alone (checked at submission), not together: two views are ascl's only."""
    api, controller, _ = world
    body = {
        **GRID,
        "space": {"objective.kind": {"values": ["trades"]}, "objective.views": {"values": [2]}},
        "max_concurrency": 1,
        "max_failed_trials": 1,
    }
    with session_scope(sessions) as session:  # as stored: this test is of the controller, not submission
        sweep_id = api.post("/api/v1/sweeps", json={**body, "space": GRID["space"]}).json()["id"]
        stored = records.get(session, sweep_id)
        stored.request = {**stored.request, "space": body["space"]}
    for _ in range(3):
        controller.cycle()
    ended = api.get(f"/api/v1/sweeps/{sweep_id}").json()
    assert ended["status"] == "FAILED"
    assert "1 trials failed (max_failed_trials 1); the parameters of trial 0" in ended["reason"]
    assert "two views" in ended["reason"]
    assert trial_jobs(sessions, sweep_id) == []
