"""A train job that registers a version gets the version's standard evaluation by itself, once
(however often the success is reconciled), unless it opted out; the evaluation's success tags the
version with its figures. A real database and a real MLflow store; Ray's answers come from a
stand-in for the cluster seam that reports every execution as finished."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from ascl.presets import get_preset
from control.reconciler import Reconciler
from control.tracking import Tracker, filter_literal
from service.db import session_scope
from service.db.models import EvalCache, Job
from service.jobs import attempts, store
from service.jobs.status import JobStatus
from service.models.figures import Figures
from service.settings import ServiceSettings
from tests.control.test_unrecordable import FinishedExecutions
from tests.service.test_store import new_job

TRAINED = get_preset("digits-ascl").with_overrides({"train.epochs": 1, "attack.eps": 0.2})
REPORT = {
    "norm": "linf", "eps": 0.2, "precision": "fp32", "batch_size": 100, "examples": 100, "clean_acc": 0.9,
    "pgd_acc": 0.5, "pgd_examples": 100, "pgd_steps": 20, "pgd_restarts": 1, "robust_acc": 0.45,
    "robust_clean_acc": 0.9, "robust_examples": 100, "robust_attacks": ["pgd", "apgd-ce"], "autoattack_acc": 0.45,
    "autoattack_version": "custom", "autoattack_attacks": ["apgd-ce"], "autoattack_examples": 100, "eps_sweep": [],
}  # fmt: skip


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); the tests use their own names."""
    root = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "artifacts").as_uri())


def finished(sessions, tmp_path, tracker, *, result, **changes) -> str:
    """A job whose attempt ran and reported `result`: the reconciler's next pass finishes it."""
    _, run_id = tracker.ensure_run(experiment="ascl", job_id=uuid.uuid4().hex, run_name="r", tags={})
    with session_scope(sessions) as session:
        job, _ = store.add_job(session, new_job(**changes), idempotency_key=None, body_hash="h")
        assert attempts.claim(session, job, dispatcher="test", checkpoint_dir=str(tmp_path)) is not None
        for status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, job.id, status, actor="test", reason="driven")
        session.get(Job, job.id).result = result(run_id)
        session.get(Job, job.id).mlflow_run_id = run_id
        return job.id


def trained_result(tracker):
    def result(run_id: str) -> dict:
        tracker.client.log_text(run_id, "{}", "model/MLmodel")  # something to register
        return {
            "model_uri": f"runs:/{run_id}/model", "checkpoint": "best.pt",
            "test": {"clean_acc": 0.9, "robust_acc": 0.5, "norm": "linf", "eps": 0.2}, "best_epoch": 0,
            "best_val_robust_acc": 0.5, "epochs_completed": 1, "resumed_from_epoch": 0, "positive_fraction": None,
            "negative_fraction": None, "seconds": 1.0,
        }  # fmt: skip

    return result


def eval_jobs(sessions) -> list[Job]:
    with session_scope(sessions) as session:
        jobs = session.execute(select(Job).where(Job.kind == "eval")).scalars().all()
        session.expunge_all()
        return list(jobs)


def test_a_registered_version_is_evaluated_once_and_its_figures_tag_it(sessions, tmp_path, tracker):
    name = f"auto-{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(data_dir=tmp_path, auto_eval_autoattack="custom", auto_eval_examples=100)
    reconciler = Reconciler(sessions, FinishedExecutions(), tracker, settings)  # type: ignore[arg-type]
    train_id = finished(
        sessions, tmp_path, tracker, result=trained_result(tracker), model_name=name, spec=TRAINED.to_dict()
    )
    reconciler.reconcile()
    reconciler.reconcile()  # a second pass (e.g. after a crash) finds the job ended: nothing twice
    (evaluation,) = eval_jobs(sessions)
    assert evaluation.target["model_name"] == name
    assert evaluation.target["model_version"] == "1"
    assert evaluation.tags == ["auto-eval"]
    assert evaluation.spec["eval"]["autoattack"] == "custom"
    assert evaluation.spec["eval"]["eps_sweep"] == [0.05, 0.1, 0.2, 0.3, 0.4]  # around the job's eps 0.2
    assert evaluation.spec["data"]["test_subset"] == evaluation.spec["eval"]["autoattack_examples"] == 100
    with session_scope(sessions) as session:
        assert session.get(Job, train_id).status == JobStatus.SUCCEEDED
        cached = session.execute(select(EvalCache)).scalars().all()
        assert [(c.job_id, c.standard) for c in cached] == [(evaluation.id, True)]
    eval_id = evaluation.id
    with session_scope(sessions) as session:
        job = session.get(Job, eval_id)
        assert attempts.claim(session, job, dispatcher="test", checkpoint_dir=str(tmp_path)) is not None
        for status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, eval_id, status, actor="test", reason="driven")
        job.result = {"model_uri": f"models:/{name}/1", "model_name": name, "model_version": "1", "report": REPORT}
        job.mlflow_run_id = "e" * 32
    reconciler.reconcile()
    (version,) = tracker.versions(name)
    figures = Figures.from_tags(version.tags)
    assert figures is not None
    assert (figures.clean_acc, figures.pgd_acc, figures.autoattack_acc, figures.examples) == (0.9, 0.5, 0.45, 100)
    assert (figures.eval_job_id, figures.threat_model) == (eval_id, "linf eps=0.2")
    assert version.tags["robustness.plot"] == f"runs:/{'e' * 32}/eps_sweep.png"
    assert len(eval_jobs(sessions)) == 1


def test_a_model_named_to_the_limit_gets_its_standard_evaluation_named_within_the_job_name_limit(
    sessions, tmp_path, tracker
):
    """'standard eval models:/<name>/1' outgrew the job name's 200 characters: on PostgreSQL the train
    job's success could not be recorded."""
    name = f"long-{uuid.uuid4().hex[:8]}".ljust(200, "x")
    settings = ServiceSettings(data_dir=tmp_path, auto_eval_autoattack="custom", auto_eval_examples=100)
    reconciler = Reconciler(sessions, FinishedExecutions(), tracker, settings)  # type: ignore[arg-type]
    train_id = finished(
        sessions, tmp_path, tracker, result=trained_result(tracker), model_name=name, spec=TRAINED.to_dict()
    )
    reconciler.reconcile()
    (evaluation,) = eval_jobs(sessions)
    assert evaluation.name == f"standard eval models:/{name}/1"[:200]
    with session_scope(sessions) as session:
        assert session.get(Job, train_id).status == JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("spec", "auto_evaluate"),
    [(TRAINED.to_dict(), False), ({"no": "config"}, True)],
    ids=["opted-out", "unreadable-config"],
)
def test_a_train_job_that_opts_out_or_cannot_be_evaluated_still_succeeds_without_one(
    sessions, tmp_path, tracker, spec, auto_evaluate
):
    reconciler = Reconciler(sessions, FinishedExecutions(), tracker, ServiceSettings(data_dir=tmp_path))  # type: ignore[arg-type]
    train_id = finished(
        sessions,
        tmp_path,
        tracker,
        result=trained_result(tracker),
        model_name=f"manual-{uuid.uuid4().hex[:8]}",
        spec=spec,
        auto_evaluate=auto_evaluate,
    )
    reconciler.reconcile()
    with session_scope(sessions) as session:
        assert session.get(Job, train_id).status == JobStatus.SUCCEEDED
        assert session.get(Job, train_id).registered_model_version == "1"
    assert eval_jobs(sessions) == []


@pytest.mark.parametrize("name", ["it's", 'say "hi"'])
def test_names_with_quotes_are_quoted_in_the_registry_filter(tracker, name):
    assert tracker.client.search_model_versions(f"name = {filter_literal(name)}") == []


@pytest.mark.parametrize("name", ["both ' and \"", "new\nline", "nul\x00", "back\\slash"])
def test_what_a_filter_cannot_quote_is_refused(name):
    with pytest.raises(ValueError, match="cannot be used in a registry filter"):
        filter_literal(name)
