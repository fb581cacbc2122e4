"""Sweeps over real HTTP routing on SQLite and PostgreSQL, with their Optuna studies in the same
database: validation that names the field, dry runs that are reproducible from the seed, lazy
creation, changing a running sweep, cancelling it."""

from __future__ import annotations

import time

import optuna
import pytest
from fastapi.testclient import TestClient

from service.api import sweeps as sweeps_api
from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.db.models import Sweep
from service.jobs.errors import Forbidden
from service.settings import ServiceSettings
from service.sweeps import study
from tests.conftest import bearer, make_token

SWEEP = {
    "name": "temp-vs-eps",
    "base": {"preset": "digits-ascl", "overrides": {"train.epochs": 3}, "queue": "default", "resources": {"cpus": 1}},
    "space": {
        "objective.temperature": {"values": [0.1, 0.2]},
        "attack.eps": {"low": 0.1, "high": 0.3},
        "optim.lr": {"low": 0.001, "high": 0.1, "log": True},
    },
    "algorithm": "random",
    "seed": 0,
    "objective": [{"metric": "val.robust_acc", "mode": "max"}],
    "max_trials": 20,
    "max_concurrency": 4,
    "max_failed_trials": 3,
    "early_stopping": {"rule": "median", "metric": "val.robust_acc", "grace_epochs": 2},
}
GRID = {
    **SWEEP,
    "algorithm": "grid",
    "space": {"objective.temperature": {"values": [0.1, 0.2]}, "attack.eps": {"values": [0.1, 0.2]}},
}

HUGE_GRID = {
    key: {"values": [0.001 * (i + 1) for i in range(100)]} for key in ("optim.lr", "attack.eps", "optim.momentum")
}


@pytest.fixture
def api(sessions, database_url, tmp_path):
    settings = ServiceSettings(data_dir=tmp_path, database_url=database_url, max_sweep_trials=1000)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as client:
        yield client


MANY_DIMENSIONS = {f"train.x{i}": {"values": [0] * 8} for i in range(5200)}


def create(api, body, **params):
    return api.post("/api/v1/sweeps", json=body, params=params)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"space": {"objective.temprature": {"values": [0.1]}}}, "space.objective.temprature", "did you mean"),
        ({"space": {"objective.temperature": {"values": [0.0, 0.1]}}}, "space.objective.temperature", "> 0"),
        ({"space": {"attack.eps": {"low": 0.3, "high": 0.1}}}, "space.attack.eps", "below high"),
        ({"space": {}}, "space", "at least one"),
        # a field's path, bounded: not 100 kB of escape sequences echoed back three times
        ({"space": {"x" * 101: {"values": [1]}}}, "space", "at most 100 characters"),
        ({"space": {"train.epochs\u001b[2J": {"values": [1]}}}, "space", "pattern"),
        ({"algorithm": "grid"}, "space.attack.eps", "choices ('values') only"),
        ({"algorithm": "nsga2"}, "algorithm", "two objectives"),
        ({"base": {"preset": "digits-ascl", "overrides": {"train.epoch": 3}}}, "base.overrides.train.epoch", "did you"),
        ({"base": {"kind": "eval", "model": "models:/m/1"}}, "base.kind", "train jobs"),
        ({"max_trials": 5000}, "max_trials", "allows 1000"),
        ({"objective": [{"metric": "val.robust_acc"}, {"metric": "val.clean_acc"}]}, "early_stopping", "single"),
        ({"objective": [{"metric": "robust_acc"}]}, "objective.metric", "pattern"),
        # a name no trial reports failed every trial, up to max_failed_trials
        ({"objective": [{"metric": "val.robust_accuracy"}]}, "objective.metric", "val figures: clean_acc, robust_acc"),
        ({"objective": [{"metric": "val.pgd_acc"}], "early_stopping": None}, "objective.metric", "no val.pgd_acc"),
        ({"early_stopping": {"rule": "median", "metric": "train.los"}}, "early_stopping.metric", "train figures"),
        ({"early_stopping": {"rule": "median", "metric": "test.robust_acc"}}, "early_stopping.metric", "at the end"),
        # what trials report depends on their config: no AutoAttack by default, pos_frac for ascl only
        ({"objective": [{"metric": "test.autoattack_acc"}]}, "objective.metric", "no test.autoattack_acc"),
        (
            {"space": {"objective.kind": {"values": ["ascl", "scl_at"]}}, "objective": [{"metric": "train.pos_frac"}]},
            "objective.metric",
            "trials with objective.kind=scl_at report no train.pos_frac",
        ),
        (  # kl: trades, or ascl with a smoothness weight; not ascl without one
            {
                "base": {**SWEEP["base"], "overrides": {"objective.kind": "trades", "objective.smoothness_weight": 1}},
                "space": {
                    "objective.kind": {"values": ["trades", "ascl"]},
                    "objective.smoothness_weight": {"values": [0, 1]},
                },
                "objective": [{"metric": "train.kl", "mode": "min"}],
                "early_stopping": None,
            },
            "objective.metric",
            "trials with objective.kind=ascl, objective.smoothness_weight=0 report no train.kl",
        ),
        # each value valid alone, not together: no trial could be made
        (
            {"space": {"objective.kind": {"values": ["trades"]}, "objective.views": {"values": [2]}}},
            "objective.views",
            "two views",
        ),
        # pruning compares trials the objective's way: on the loss, it would stop the best ones
        ({"early_stopping": {"rule": "median", "metric": "train.loss"}}, "early_stopping.metric", "max val.robust"),
        # Optuna's grid sampler lists the whole grid at every trial, in the dispatcher's thread
        ({"algorithm": "grid", "space": HUGE_GRID}, "space", "a grid of 1,000,000 points; at most 10,000"),
        ({"space": {"seed": {"low": 0.5, "high": 3, "log": True, "int": True}}}, "space.seed", "whole numbers"),
        ({"space": {"seed": {"low": 0.2, "high": 0.7, "int": True}}}, "space.seed", "whole numbers"),
        # Optuna samples integers as int64: every TPE ask failed once its first 5 trials were done
        ({"space": {"model.feat_dim": {"low": -1e300, "high": 0, "int": True}}}, "space.model.feat_dim", "2**53"),
        # counted as read: a grid's size of 4,300 digits was not even printable (a 500)
        ({"algorithm": "grid", "space": MANY_DIMENSIONS}, "space", "at most 20 items"),
        ({"space": MANY_DIMENSIONS}, "space", "at most 20 items"),
    ],
)
def test_bad_sweeps_are_422_naming_the_field(api, change, field, fragment):
    for params in ({"dry_run": "true"}, {}):
        response = create(api, {**SWEEP, **change}, **params)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field
        assert fragment in response.json()["detail"]
    assert api.get("/api/v1/sweeps").json()["items"] == []


@pytest.mark.parametrize(
    "change",
    [
        {"objective": [{"metric": "test.robust_acc"}]},  # pruned on val.robust_acc
        {
            "objective": [{"metric": "train.loss", "mode": "min"}],
            "early_stopping": {"rule": "median", "metric": "train.loss"},
        },
        {"early_stopping": {"rule": "successive_halving", "metric": "val.clean_acc"}},
        {
            "base": {**SWEEP["base"], "overrides": {"eval.autoattack": "custom"}},
            "objective": [{"metric": "test.autoattack_acc"}],
            "early_stopping": None,
        },
        {
            "space": {"objective.kind": {"values": ["ascl", "trades"]}},
            "objective": [{"metric": "train.kl", "mode": "min"}],
            "early_stopping": None,
        },
        # the base's own value of a searched field is no trial's
        {
            "base": {**SWEEP["base"], "overrides": {"objective.kind": "standard"}},
            "space": {"objective.kind": {"values": ["pgd_at", "trades"]}},
            "objective": [{"metric": "train.adv_acc"}],
        },
        {
            "base": {**SWEEP["base"], "overrides": {"eval.pgd_steps": 0}},
            "space": {"eval.pgd_steps": {"low": 10, "high": 200, "int": True}},
            "objective": [{"metric": "test.pgd_acc"}],
        },
        {
            "base": {**SWEEP["base"], "overrides": {"objective.smoothness_weight": 0}},
            "space": {
                "objective.kind": {"values": ["ascl", "scl_at"]},
                "objective.smoothness_weight": {"low": 0.1, "high": 1},
            },
            "objective": [{"metric": "train.kl", "mode": "min"}],
            "early_stopping": None,
        },
    ],
)
def test_a_figure_every_trial_reports_is_a_sweeps_objective(api, change):
    response = create(api, {**SWEEP, **change}, dry_run=True)
    assert response.status_code == 201, response.json().get("detail")


def test_a_sweep_some_of_whose_trials_cannot_be_made_runs_and_its_dry_run_says_which(api):
    """two views are ascl's only: the controller fails those trials, counted against max_failed_trials"""
    space = {"objective.kind": {"values": ["ascl", "trades"]}, "objective.views": {"values": [1, 2]}}
    body = {**SWEEP, "algorithm": "grid", "space": space, "max_concurrency": 4, "early_stopping": None}
    shown = create(api, body, dry_run=True).json()["first_trials"]
    impossible = [t for t in shown if t["spec"] is None]
    assert [t["params"] for t in impossible] == [{"objective.kind": "trades", "objective.views": 2}]
    assert "two views are only defined for the ascl objective" in impossible[0]["problem"]
    assert create(api, body).status_code == 201


def test_a_dry_run_shows_the_first_trials_and_is_reproducible_from_the_seed(api):
    first = create(api, SWEEP, dry_run=True).json()
    again = create(api, SWEEP, dry_run=True).json()
    other = create(api, {**SWEEP, "seed": 1}, dry_run=True).json()
    assert first["trials_planned"] == 20
    assert len(first["first_trials"]) == 4  # the concurrency: what would start now
    assert first == again
    assert [t["params"] for t in other["first_trials"]] != [t["params"] for t in first["first_trials"]]
    trial = first["first_trials"][0]
    assert trial["spec"]["objective"]["temperature"] == trial["params"]["objective.temperature"]
    assert trial["spec"]["optim"]["lr"] == trial["params"]["optim.lr"]
    assert trial["spec"]["train"]["epochs"] == 3  # the base's own override
    assert 0.1 <= trial["params"]["attack.eps"] <= 0.3
    assert api.get("/api/v1/sweeps").json()["items"] == []  # nothing started


@pytest.mark.parametrize("algorithm", ["random", "tpe", "nsga2", "grid"])
def test_the_largest_seed_samples_with_every_algorithm(api, algorithm):
    body = {**GRID, "algorithm": algorithm, "seed": 2**31 - 1, "early_stopping": None}
    if algorithm == "nsga2":
        body["objective"] = [{"metric": "val.robust_acc"}, {"metric": "val.clean_acc"}]
    shown = create(api, body, dry_run="true")
    assert shown.is_success, shown.text
    assert len(shown.json()["first_trials"]) == 4


def test_a_dry_run_shows_at_most_twenty_trials_however_many_run_at_once(api):
    shown = create(api, {**SWEEP, "max_trials": 1000, "max_concurrency": 1000}, dry_run="true").json()
    assert (shown["trials_planned"], len(shown["first_trials"])) == (1000, 20)


def test_a_sweep_trains_under_its_owners_model_name_only(api, sessions):
    """Trials register versions as a job of the sweep's owner would: another user's name is refused,
    and a new one becomes the owner's."""
    bob = bearer(make_token(sessions, "bob", "user"))
    mine = {**SWEEP, "base": {**SWEEP["base"], "model_name": "alice-sweep-model"}}
    assert create(api, mine).status_code == 201
    for params in ({"dry_run": "true"}, {}):
        refused = api.post("/api/v1/sweeps", json=mine, params=params, headers=bob)
        assert refused.status_code == 403, refused.text
        assert "belongs to alice" in refused.json()["detail"]
    job = {**SWEEP["base"], "model_name": "alice-sweep-model"}
    assert api.post("/api/v1/jobs", json=job, headers=bob).status_code == 403
    grouped = {**SWEEP, "base": {**SWEEP["base"], "model_name": "bobs-model", "model_group": "admins"}}
    refused = api.post("/api/v1/sweeps", json=grouped, headers=bob)
    assert (refused.status_code, refused.json()["field"]) == (422, "base.model_group")
    assert len(api.get("/api/v1/sweeps").json()["items"]) == 1


def test_a_sweep_refused_in_its_last_step_leaves_no_study_behind(api, database_url, monkeypatch):
    def claimed_meanwhile(*_args, **_kwargs):  # another user's job took the name since it was checked
        raise Forbidden("model name 'late' belongs to carol; train under a name of your own")

    monkeypatch.setattr(sweeps_api.models, "check_and_claim", claimed_meanwhile)
    refused = create(api, {**SWEEP, "base": {**SWEEP["base"], "model_name": "late"}})
    assert refused.status_code == 403, refused.text
    assert api.get("/api/v1/sweeps").json()["items"] == []
    assert optuna.get_all_study_names(study.storage(database_url)) == []


def test_a_grid_plans_its_size_and_trials_are_created_lazily(api):
    created = create(api, {**GRID, "early_stopping": None})
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert (sweep["status"], sweep["max_trials"], sweep["trials"]) == ("RUNNING", 4, {})
    assert api.get("/api/v1/jobs").json()["items"] == []  # the control plane creates trials, lazily
    listed = api.get("/api/v1/sweeps", params={"status": ["RUNNING"]}).json()["items"]
    assert [s["id"] for s in listed] == [sweep["id"]]


def test_a_thousand_trial_sweep_is_created_at_once(api):
    started = time.perf_counter()
    sweep = create(api, {**SWEEP, "max_trials": 1000}).json()
    assert sweep["max_trials"] == 1000
    assert time.perf_counter() - started < 5  # measured in bench/bench_service.py; here only: no trial is made


def test_only_the_owner_changes_a_running_sweep(api, sessions):
    sweep = create(api, {**GRID, "early_stopping": None}).json()
    path = f"/api/v1/sweeps/{sweep['id']}"
    assert api.patch(path, json={"max_trials": 100}).json()["max_trials"] == 4  # a grid has 4 points
    bob = bearer(make_token(sessions, "bob", "user"))
    assert api.patch(path, json={"max_concurrency": 1}, headers=bob).status_code == 403
    assert api.post(f"{path}/cancel", json={}, headers=bob).status_code == 403
    with session_scope(sessions) as session:  # as the control plane records a finished trial
        row = session.get(Sweep, sweep["id"])
        row.best, row.mlflow_run_id = {"best_trial": {"values": [0.61], "params": {"optim.lr": 0.0123}}}, "0123abcd"
    seen = api.get(path, headers=bob).json()  # another user's: its state, not its details or results
    assert (seen["request"], seen["best"], seen["mlflow_run_id"], seen["mlflow_run_url"]) == (None, None, None, None)
    assert api.get(path).json()["best"]["best_trial"]["values"] == [0.61]
    cancelled = api.post(f"{path}/cancel", json={"running": "finish"}).json()
    assert (cancelled["status"], cancelled["outcome"]) == ("STOPPING", "CANCELLED")
    assert api.patch(path, json={"max_trials": 2}).status_code == 409


def test_a_grid_whose_stored_space_this_version_cannot_read_keeps_its_length_and_says_why(api, sessions):
    sweep = create(api, {**GRID, "early_stopping": None}).json()
    with session_scope(sessions) as session:  # as a newer API stores it, before the control plane is upgraded
        row = session.get(Sweep, sweep["id"])
        first = next(iter(row.request["space"]))
        space = {**row.request["space"], first: {**row.request["space"][first], "a_later_option": True}}
        row.request = {**row.request, "space": space}
    path = f"/api/v1/sweeps/{sweep['id']}"
    refused = api.patch(path, json={"max_trials": 2})
    assert refused.status_code == 409, refused.text
    assert "its grid size is unknown here" in refused.json()["detail"]
    assert api.patch(path, json={"max_concurrency": 1}).json()["max_concurrency"] == 1  # the rest still changes
    assert api.get(path).json()["max_trials"] == 4


def test_a_users_sweeps_are_bounded_like_their_queued_jobs(sessions, database_url, tmp_path):
    """Trials are the owner's queued jobs: a sweep is refused where a job would be, and a user's
    running sweeps are bounded (each may plan up to max_sweep_trials)."""
    settings = ServiceSettings(
        data_dir=tmp_path, database_url=database_url, max_queued_per_user=2, max_running_sweeps_per_user=2
    )
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as api:
        assert [create(api, GRID).status_code for _ in range(3)] == [201, 201, 422]
        refused = create(api, GRID).json()
        assert (refused["field"], "already has 2 running sweeps" in refused["detail"]) == ("sweep", True)
        assert create(api, GRID, dry_run=True).status_code == 201  # validating one is not starting one
        bad_cursor = api.get("/api/v1/sweeps", params={"cursor": "MjAyNi0wMS0wMXwA"}).json()
        assert (bad_cursor["field"], bad_cursor["detail"]) == ("cursor", "cursor: not a cursor returned by this API")
        for sweep in api.get("/api/v1/sweeps").json()["items"]:
            api.post(f"/api/v1/sweeps/{sweep['id']}/cancel", json={})
        for _ in range(2):
            assert api.post("/api/v1/jobs", json={"preset": "digits-ascl"}).status_code == 201
        full = create(api, GRID).json()
        assert (full["field"], "already has 2 queued jobs" in full["detail"]) == ("queue", True)


def test_a_sweeps_data_directories_are_checked_and_resolved_as_a_jobs_are(sessions, database_url, tmp_path):
    """A trial's data must be where a job's must be (ASCL_DATA_ROOT): a directory missing there is
    422 at submission, and the trials' specs name the directories that are read."""
    root = tmp_path / "datasets"
    for present in ("data", "other"):
        (root / present / "cifar-10-batches-py").mkdir(parents=True)
    settings = ServiceSettings(data_dir=tmp_path, database_url=database_url, data_root=root)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    base = {"preset": "paper-cifar10-resnet18-ascl", "force_queue": True}
    with TestClient(app, headers=bearer(make_token(sessions, "alice", "user"))) as api:
        for values, fragment in (
            (["other", "missing"], "is not in"),
            (["~nosuchuser12345"], "names no home directory"),
        ):
            body = {**GRID, "base": base, "space": {"data.data_dir": {"values": values}}}
            response = create(api, body, dry_run="true")
            assert (response.status_code, response.json()["field"]) == (422, "space.data.data_dir"), response.text
            assert fragment in response.json()["detail"]
        body = {**GRID, "base": base, "space": {"data.data_dir": {"values": ["other"]}}}
        planned = create(api, body, dry_run="true")
        assert planned.status_code == 201, planned.text
        assert [t["spec"]["data"]["data_dir"] for t in planned.json()["first_trials"]] == [str(root / "other")]


def test_a_stored_request_is_read_back_under_the_models_rules_not_the_submission_checks():
    """The controller re-reads each sweep's stored request at every pass: a check added at submission
    later (a grid's size, an integer range's ends) must not stop sweeps stored before it."""
    from service.api.sweep_schemas import SweepCreate

    SweepCreate.model_validate({**SWEEP, "space": {"seed": {"low": 0.5, "high": 3, "int": True}}})
    SweepCreate.model_validate({**GRID, "space": HUGE_GRID})
