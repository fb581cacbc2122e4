"""What a worker reports reaches the API whole, or is refused alone: over real HTTP (uvicorn, SQLite
and PostgreSQL), NaN and infinite figures are left out of a report (PostgreSQL refused them with a
500, a NaN ETA broke everyone's queue view, and a 0/0 figure made the stock worker's reports and its
final result fail), a refused heartbeat does not end the heartbeat thread, and the epoch history
holds one entry per epoch of the job."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import mlflow
import pytest

from ascl.training.callbacks import EpochSummary, StepProgress
from service.api.app import create_app
from service.cluster import StaticCluster
from service.contracts import AttemptOutcome, TrainResult
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token, serving
from workers.api_client import ApiClient, AttemptIdentity
from workers.reporting import ServiceReporter


@pytest.fixture
def server(sessions, tmp_path) -> Iterator[str]:
    app = create_app(sessions, settings=ServiceSettings(data_dir=tmp_path), cluster=StaticCluster({"CPU": 8.0}))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def attempt(server, sessions) -> tuple[str, str]:
    """A two-epoch job claimed as a dispatcher would: its id and its attempt's fencing token."""
    body = {"preset": "digits-ascl", "overrides": {"train.epochs": 2}}
    job_id = httpx.post(f"{server}/api/v1/jobs", json=body, headers=bearer(make_token(sessions))).json()["id"]
    with session_scope(sessions) as session:
        claimed = attempts.claim(session, session.get(Job, job_id), dispatcher="test", checkpoint_dir="/tmp/x")
        assert claimed is not None
        return job_id, claimed.fencing_token


def beat(server: str, attempt: tuple[str, str], content: str) -> httpx.Response:
    job_id, token = attempt
    return httpx.post(
        f"{server}/api/v1/internal/jobs/{job_id}/attempts/1/heartbeat",
        content=content,
        headers={"X-Attempt-Token": token, "Content-Type": "application/json"},
        timeout=30,  # httpx's 5 s default was once too short on a loaded 2-core CI machine
    )


def epoch(number: int, **train: float) -> str:
    report = {"epoch": number, "epochs": 2, "lr": 0.1, "seconds": 1.0, "images_per_s": 10.0, "train": train}
    return httpx.Request("POST", "http://x", json={"epoch": report}).content.decode()


@pytest.mark.parametrize(
    ("content", "status", "progress"),
    [
        ('{"progress": {"eta_s": NaN, "epoch": 1}}', 200, {"epoch": 1}),  # left out, the rest kept
        ('{"progress": {"metrics": {"loss": Infinity, "clean_acc": 0.5}}}', 200, {"metrics": {"clean_acc": 0.5}}),
        ('{"progress": {"eta_s": "NaN"}}', 422, None),
        ('{"epoch": {"epoch": 0, "epochs": 2, "lr": 0.1, "seconds": 1, "images_per_s": NaN, "train": {}}}', 422, None),
    ],
)
def test_non_finite_figures_are_left_out_or_refused_and_the_queue_view_still_works(
    server, attempt, sessions, content, status, progress
):
    answer = beat(server, attempt, content)
    assert answer.status_code == status, answer.text
    headers = bearer(make_token(sessions))
    if progress is not None:
        job = httpx.get(f"{server}/api/v1/jobs/{attempt[0]}", headers=headers).json()
        assert {key: job["progress"][key] for key in progress} == progress
        assert "eta_s" not in job["progress"]
    listed = httpx.get(f"{server}/api/v1/jobs", headers=headers)
    assert listed.status_code == 200, listed.text


def test_an_outcome_with_a_0_over_0_figure_is_recorded_with_it_left_out(server, attempt, sessions):
    job_id, token = attempt
    api = ApiClient(AttemptIdentity(api_url=server, job_id=job_id, attempt=1, token=token), retries=1)
    result = TrainResult(  # built by the worker as runs.py builds it: batch_size=1 draws no negatives
        model_uri="runs:/r/model",
        checkpoint="best.pt",
        test={"clean_acc": 0.9, "robust_acc": math.nan, "eps_sweep": [0.5, math.nan]},
        epochs_completed=2,
        resumed_from_epoch=0,
        positive_fraction=0.5,
        negative_fraction=math.nan,
        seconds=3.0,
    )
    api.outcome(AttemptOutcome(succeeded=True, train=result))
    with session_scope(sessions) as session:
        recorded = session.get(Job, job_id).result
    assert recorded["negative_fraction"] is None
    assert recorded["test"] == {"clean_acc": 0.9, "eps_sweep": [0.5, None]}


def test_the_epoch_history_holds_one_entry_per_epoch_of_the_job(server, attempt, sessions):
    assert beat(server, attempt, epoch(0, loss=2.0)).status_code == 200
    assert beat(server, attempt, epoch(0, loss=1.5)).status_code == 200  # a resumed attempt re-reports it
    assert beat(server, attempt, epoch(1, loss=1.0)).status_code == 200
    past = beat(server, attempt, epoch(2, loss=0.5))
    assert past.status_code == 422, past.text
    many = beat(server, attempt, epoch(1, **{f"m{i}": 1.0 for i in range(65)}))
    assert many.status_code == 422, many.text
    history = httpx.get(f"{server}/api/v1/jobs/{attempt[0]}/metrics", headers=bearer(make_token(sessions))).json()
    assert [(entry["epoch"], entry["train"]["loss"]) for entry in history["epochs"]] == [(0, 1.5), (1, 1.0)]


def test_the_worker_leaves_out_a_0_over_0_figure_and_keeps_beating_after_a_refusal(
    server, attempt, sessions, tmp_path, new_mlflow_store
):
    job_id, token = attempt
    api = ApiClient(AttemptIdentity(api_url=server, job_id=job_id, attempt=1, token=token), retries=1)
    mlflow.set_tracking_uri(new_mlflow_store(tmp_path))
    undefined = {"loss": 1.25, "neg_frac": math.nan}  # a batch without negatives: 0/0
    with mlflow.start_run(), ServiceReporter(api, interval_s=0.2) as reporter:
        reporter.on_step(
            StepProgress(epoch=0, epochs=2, step=1, total_steps=4, images_per_s=8.0, metrics=undefined, lr=0.1)
        )
        summary = {"epoch": 0, "epochs": 2, "lr": 0.1, "seconds": 1.0, "images_per_s": 8.0, "train": undefined}
        reporter.on_epoch_end(EpochSummary(**summary))
        reporter.on_epoch_end(EpochSummary(**(summary | {"epoch": 5})))  # refused: past the job's epochs
        reporter.flush()
        time.sleep(0.6)  # heartbeats after the refusal
        assert reporter._thread.is_alive()
        before = time.monotonic()
        reporter.on_step(
            StepProgress(epoch=1, epochs=2, step=3, total_steps=4, images_per_s=8.0, metrics=undefined, lr=0.1)
        )
        time.sleep(0.6)
        assert reporter.last_contact > before  # the API still hears from it
    job = httpx.get(f"{server}/api/v1/jobs/{job_id}", headers=bearer(make_token(sessions))).json()
    assert job["progress"]["metrics"] == {"loss": 1.25}
    assert job["progress"]["step"] == 3
    history = httpx.get(f"{server}/api/v1/jobs/{job_id}/metrics", headers=bearer(make_token(sessions))).json()
    assert [entry["train"] for entry in history["epochs"]] == [{"loss": 1.25}]


def test_a_resumed_attempts_eta_counts_only_its_own_epochs(monkeypatch):
    """Resumed at epoch 140 of 150 (10 steps an epoch), a minute in: its own 5 steps and 1 epoch set
    the pace, not the 1,400 steps and 140 epochs of its checkpoint (an ETA of 4 s, not 19 min)."""
    monkeypatch.setattr(mlflow, "log_metrics", lambda *_args, **_kwargs: None)  # no run here: the ETA only
    identity = AttemptIdentity(api_url="http://127.0.0.1:9", job_id="0" * 32, attempt=2, token="t")
    reporter = ServiceReporter(ApiClient(identity, retries=1))  # not entered: nothing is sent
    reporter.started = time.monotonic() - 60.0
    step = StepProgress(epoch=140, epochs=150, step=1405, total_steps=1500, images_per_s=8.0, metrics={}, lr=0.1)
    reporter.on_step(step)
    assert reporter.progress.eta_s == pytest.approx(60.0 / 5 * 95, rel=0.01)
    assert (reporter.progress.epoch, reporter.progress.epochs) == (140, 150)  # "epoch 141/150" before it ends
    summary = EpochSummary(epoch=140, epochs=150, lr=0.1, seconds=6.0, images_per_s=8.0, train={"loss": 1.0})
    reporter.on_epoch_end(summary)
    assert reporter.progress.eta_s == pytest.approx(60.0 / 1 * 9, rel=0.01)
