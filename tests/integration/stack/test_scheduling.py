"""Shared queues and sweeps with a real local Ray (2 logical CPUs), a real MLflow server and both
databases: a 2x2 grid sweep end to end, fair share between two users, per-user and per-queue
limits, dependencies, and the reasons waiting jobs give."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient

from service.client import AsclClient
from tests.conftest import make_token
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "train.epochs": 1,
    "data.train_subset": 64,
    "eval.pgd_steps": 1,
    "eval.val_steps": 1,
    "eval.eps_sweep": [],
    "eval.batch_size": 300,
}


def job(cpus: float = 1.0, **extra):
    return {"preset": "digits-pgdat", "overrides": TINY, "resources": {"cpus": cpus}, **extra}


def user(service, name: str) -> AsclClient:
    return AsclClient(service.settings.api_url, token=make_token(service.stack.plane.sessions, name, "user"))


def running_intervals(client, job_ids):
    """(start, end) of each job's RUNNING state, from its events."""
    intervals = []
    for job_id in job_ids:
        events = client.events(job_id)
        start = next(datetime.fromisoformat(e["at"]) for e in events if e["to_status"] == "RUNNING")
        end = datetime.fromisoformat(events[-1]["at"])
        intervals.append((start, end))
    return intervals


def most_at_once(intervals) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    level = peak = 0
    for _, step in points:
        level += step
        peak = max(peak, level)
    return peak


def test_a_two_by_two_grid_runs_four_trials_two_at_a_time_and_reports_the_best(service):
    client = service.client
    sweep = client.create_sweep(
        {
            "name": "e2e grid",
            "base": job(mlflow_experiment="sweeps"),
            "space": {"attack.eps": {"values": [0.1, 0.2]}, "optim.lr": {"values": [0.05, 0.1]}},
            "algorithm": "grid",
            "objective": [{"metric": "val.robust_acc", "mode": "max"}],
            "max_trials": 10,
            "max_concurrency": 2,
        }
    )
    done = wait_for(lambda: (s := client.sweep(sweep["id"]))["status"] in ("SUCCEEDED", "FAILED") and s, timeout_s=400)
    assert done["status"] == "SUCCEEDED", done["reason"]
    trials = client.sweep_trials(sweep["id"])
    assert len(trials) == 4
    assert {(t["params"]["attack.eps"], t["params"]["optim.lr"]) for t in trials} == {
        (0.1, 0.05),
        (0.1, 0.1),
        (0.2, 0.05),
        (0.2, 0.1),
    }
    assert most_at_once(running_intervals(client, [t["job_id"] for t in trials])) <= 2
    best = done["best"]["best_trial"]
    assert best["values"][0] == max(t["values"][0] for t in trials)
    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    wait_for(lambda: mlflow.get_run(done["mlflow_run_id"]).info.status == "FINISHED", timeout_s=30)
    parent = mlflow.get_run(done["mlflow_run_id"])
    child = mlflow.get_run(client.get(trials[0]["job_id"])["mlflow_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {a.path for a in mlflow.list_artifacts(parent.info.run_id, "summary")} == {
        "summary/trials.csv",
        "summary/objective.png",
    }


def test_the_median_rule_stops_a_trial_that_learns_nothing(service):
    client = service.client
    body = {
        "name": "e2e prune",
        "base": job(overrides={**TINY, "train.epochs": 4, "data.train_subset": 256}),
        "space": {"optim.lr": {"values": [0.1, 1e-9]}},
        "algorithm": "random",
        "seed": 4,
        "objective": [{"metric": "val.clean_acc", "mode": "max"}],
        "max_trials": 2,
        "max_concurrency": 1,
        "early_stopping": {"rule": "median", "metric": "val.clean_acc", "grace_epochs": 1, "min_trials": 1},
    }
    planned = client.create_sweep({**body, "max_concurrency": 2}, dry_run=True)["first_trials"]
    assert [t["params"]["optim.lr"] for t in planned] == [0.1, 1e-9], "seed 4 no longer learns first"
    sweep = client.create_sweep(body)
    done = wait_for(lambda: (s := client.sweep(sweep["id"]))["status"] in ("SUCCEEDED", "FAILED") and s, timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["reason"]
    assert done["trials"] == {"SUCCEEDED": 1, "PRUNED": 1}
    learner, hopeless = (client.get(t["job_id"]) for t in client.sweep_trials(sweep["id"]))
    assert learner["status"] == "SUCCEEDED"
    assert (hopeless["status"], hopeless["error_class"]) == ("CANCELLED", "PRUNED")
    reasons = [e["reason"] for e in client.events(hopeless["id"])]
    assert any(r.startswith("pruned by the median rule at epoch") for r in reasons), reasons
    mlflow = MlflowClient(service.stack.tracker.tracking_uri)
    wait_for(lambda: mlflow.get_run(done["mlflow_run_id"]).info.status == "FINISHED", timeout_s=30)
    table = Path(mlflow.download_artifacts(done["mlflow_run_id"], "summary/trials.csv")).read_text()
    assert f"{hopeless['id']},PRUNED" in table  # the summary says what the API says


def test_a_second_user_starts_second_not_after_the_first_users_batch(service):
    alice, bob = user(service, "alice"), user(service, "bob")
    mine = [alice.submit(job(cpus=2))["id"] for _ in range(10)]  # 2 CPUs each: one at a time
    theirs = bob.submit(job(cpus=2))["id"]
    try:
        wait_for(lambda: alice.get(mine[0])["status"] in ("RUNNING", "SUCCEEDED"), timeout_s=120)
        waiting = bob.get(theirs)
        assert waiting["queue_position"] == 1  # next, ahead of alice's other nine
        wait_for(lambda: bob.get(theirs)["status"] in ("RUNNING", "SUCCEEDED"), timeout_s=180)
        started = {j: alice.get(j)["status"] for j in mine[1:]}
        assert all(status == "QUEUED" for status in started.values()), started
    finally:
        for job_id in mine:
            if alice.get(job_id)["status"] in ("QUEUED", "CLAIMED", "SUBMITTED", "RUNNING"):
                alice.cancel(job_id)
        wait_for(lambda: all(alice.get(j)["status"] in ("SUCCEEDED", "CANCELLED") for j in mine), timeout_s=120)
        bob.wait(theirs, timeout_s=120)


def test_per_user_and_per_queue_limits_hold_and_say_so(service):
    admin = service.client
    admin.put_queue("tight", {"max_cpus": 1, "user_max_cpus": 1})
    carol, dave = user(service, "carol"), user(service, "dave")
    first = carol.submit(job(queue="tight"))["id"]
    second = carol.submit(job(queue="tight"))["id"]
    other = dave.submit(job(queue="tight"))["id"]
    wait_for(lambda: carol.get(first)["status"] == "RUNNING", timeout_s=120)
    assert carol.get(second)["pending_reason"] == "USER_LIMIT"
    assert dave.get(other)["pending_reason"] == "QUEUE_LIMIT"
    for job_id, client in ((first, carol), (second, carol), (other, dave)):
        assert client.wait(job_id, timeout_s=300)["status"] == "SUCCEEDED"
    intervals = running_intervals(admin, [first, second, other])
    assert most_at_once(intervals) == 1  # the queue never ran two at once


def test_depends_on_runs_the_eval_after_the_train_job_and_cancels_it_when_that_fails(service, tmp_path):
    client = service.client
    train = client.submit(job(model_name="dependency-e2e"))
    evaluation = client.submit({"kind": "eval", "model": train["id"], "depends_on": [{"job": train["id"]}]})
    assert client.get(evaluation["id"])["pending_reason"] == "DEPENDENCY"
    done = client.wait(evaluation["id"], timeout_s=300)
    assert done["status"] == "SUCCEEDED", done["error_message"]
    assert done["started_at"] > client.get(train["id"])["finished_at"]

    failing = client.submit(job(overrides={**TINY, "data.dataset": "mnist", "data.data_dir": str(tmp_path)}))
    after = client.submit(job(depends_on=[{"job": failing["id"], "on": "success"}]))
    anyway = client.submit(job(depends_on=[{"job": failing["id"], "on": "any"}]))
    assert client.wait(failing["id"], timeout_s=300)["status"] == "FAILED"
    cancelled = client.wait(after["id"], timeout_s=120)
    assert cancelled["status"] == "CANCELLED", (client.events(after["id"]), client.events(failing["id"]), cancelled)
    assert f"job {failing['id']} ended FAILED" in cancelled["error_message"]
    reasons = [e["reason"] for e in client.events(after["id"])]
    assert f"dependency: job {failing['id']} ended FAILED" in reasons
    assert client.wait(anyway["id"], timeout_s=300)["status"] == "SUCCEEDED"


def test_a_held_job_keeps_its_place_and_starts_once_released(service):
    client = service.client
    held = client.submit(job(hold=True))
    assert client.get(held["id"])["pending_reason"] == "HELD"
    second = client.submit(job(cpus=2, hold=True))
    assert client.hold(second["id"])["held"] is True  # holding a held job changes nothing
    infeasible = client.submit(job(cpus=64, force_queue=True))
    assert client.get(infeasible["id"])["pending_reason"] == "INFEASIBLE"
    client.release(held["id"])
    assert client.wait(held["id"], timeout_s=300)["status"] == "SUCCEEDED"
    reasons = [e["reason"] for e in client.events(held["id"])]
    assert reasons[:2] == ["submitted, held", "released"]
    client.cancel(infeasible["id"])
    assert client.release(second["id"])["held"] is False
    assert client.get(second["id"])["pending_reason"] != "HELD"  # it waits for nothing but room now
    client.cancel(second["id"])  # running a second job proves nothing more
    assert client.wait(second["id"], timeout_s=120)["status"] == "CANCELLED"
