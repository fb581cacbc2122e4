"""A finished job whose outcome the registry keeps refusing still ends, after a bounded number of
tries, with a clear error (before, a quote in a model name wedged such a job in RUNNING forever,
holding its resources). A real database and a real MLflow store; Ray's answers come from a stand-in
for the cluster seam, reporting the attempt's execution as finished."""

from __future__ import annotations

from typing import Any

from control.reconciler import MAX_RECORD_TRIES, Reconciler
from control.tracking import Tracker
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts, store
from service.jobs.status import JobStatus
from service.settings import ServiceSettings
from tests.service.test_store import new_job


class FinishedExecutions:
    """The cluster as the reconciler sees it when every execution has ended successfully."""

    def status(self, submission_id: str) -> str:
        return "SUCCEEDED"

    def details(self, submission_id: str) -> dict[str, Any]:
        return {}

    def stop(self, submission_id: str) -> None:
        return None

    def delete(self, submission_id: str) -> None:
        return None

    def final_log(self, submission_id: str) -> str:
        return "the attempt's log\n" + "x" * 100_000  # one very long line


def test_a_model_the_registry_refuses_ends_the_job_after_bounded_tries(sessions, tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=(tmp_path / "artifacts").as_uri())
    with session_scope(sessions) as session:
        job, _ = store.add_job(session, new_job(model_name="refused"), idempotency_key=None, body_hash="h")
        attempt = attempts.claim(session, job, dispatcher="test", checkpoint_dir=str(tmp_path))
        assert attempt is not None
        for status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, job.id, status, actor="test", reason="driven")
        session.get(Job, job.id).result = {
            "model_uri": "runs:/0123456789abcdef0123456789abcdef/model",  # no such run: registration fails
            "checkpoint": "best.pt",
            "test": {"clean_acc": 0.9, "robust_acc": 0.5, "norm": "linf", "eps": 0.2},
            "best_epoch": 0,
            "best_val_robust_acc": 0.5,
            "epochs_completed": 1,
            "resumed_from_epoch": 0,
            "positive_fraction": None,
            "negative_fraction": None,
            "seconds": 1.0,
        }
        job_id = job.id
    reconciler = Reconciler(sessions, FinishedExecutions(), tracker, ServiceSettings(data_dir=tmp_path))  # type: ignore[arg-type]
    for _ in range(MAX_RECORD_TRIES - 1):
        reconciler.reconcile()
        with session_scope(sessions) as session:
            assert session.get(Job, job_id).status == JobStatus.RUNNING  # retried: the registry may recover
    reconciler.reconcile()
    with session_scope(sessions) as session:
        ended = session.get(Job, job_id)
        assert ended.status == JobStatus.FAILED
        assert ended.error_class == "UNRECORDABLE"
        assert f"could not be registered after {MAX_RECORD_TRIES} tries" in ended.error_message
        assert ended.registered_model_version is None
        kept = attempts.get_attempt(session, job_id, 1).log_tail
        assert kept == "x" * 64_000  # the tail's end, bounded in characters as in lines
