"""Attempts: one per execution of a job on Ray. Claiming creates one with a fresh fencing token and
a deterministic Ray submission id; the worker's calls are accepted only from the job's current
attempt holding that token (`fenced_attempt`). Functions never commit: the caller owns the
transaction."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.contracts import (
    AttemptOutcome,
    AttemptSpec,
    AttemptStatus,
    EpochReport,
    EvalTarget,
    Heartbeat,
    JobKind,
    WorkerResources,
)
from service.db.models import Attempt, Job
from service.jobs.errors import InvalidSpec, StaleAttempt
from service.jobs.status import ACTIVE, JobStatus
from service.jobs.store import get_job, now, transition


def claim(session: Session, job: Job, *, dispatcher: str, checkpoint_dir: str) -> Attempt | None:
    """QUEUED → CLAIMED with a new attempt: a fresh fencing token and a deterministic Ray
    submission id, so a restarted dispatcher finds the execution instead of starting another."""
    attempt_no = job.attempts_made + 1
    if (
        transition(
            session,
            job.id,
            JobStatus.CLAIMED,
            actor=dispatcher,
            reason="claimed",
            attempt_no=attempt_no,
            values={"attempts_made": attempt_no},
        )
        is None
    ):
        return None
    attempt = Attempt(
        job_id=job.id,
        attempt_no=attempt_no,
        fencing_token=secrets.token_hex(16),
        ray_submission_id=submission_id(job.id, attempt_no),
        status=AttemptStatus.CLAIMED,
        checkpoint_dir=checkpoint_dir,
        claimed_at=now(),
    )
    session.add(attempt)
    session.flush()
    return attempt


def submission_id(job_id: str, attempt_no: int) -> str:
    return f"ascl-{job_id}-a{attempt_no}"


def current_attempt(session: Session, job: Job) -> Attempt | None:
    if job.attempts_made == 0:
        return None
    return session.execute(
        select(Attempt).where(Attempt.job_id == job.id, Attempt.attempt_no == job.attempts_made)
    ).scalar_one_or_none()


def get_attempt(session: Session, job_id: str, attempt_no: int) -> Attempt:
    return session.execute(
        select(Attempt).where(Attempt.job_id == job_id, Attempt.attempt_no == attempt_no)
    ).scalar_one()


def fenced_attempt(session: Session, job_id: str, attempt_no: int, token: str) -> tuple[Job, Attempt]:
    """The attempt, only if it is the job's current one, holds the token, and the job still runs."""
    job = get_job(session, job_id)
    attempt = current_attempt(session, job)
    if (
        attempt is None
        or attempt.attempt_no != attempt_no
        or not secrets.compare_digest(attempt.fencing_token.encode(), token.encode())
        or JobStatus(job.status) not in ACTIVE
    ):
        raise StaleAttempt(f"attempt {attempt_no} of job {job_id} is not current (job is {job.status}): stop")
    return job, attempt


def attempt_spec(session: Session, job_id: str, attempt_no: int, token: str) -> AttemptSpec:
    job, attempt = fenced_attempt(session, job_id, attempt_no, token)
    if job.mlflow_run_id is None:  # the dispatcher creates the run before it submits
        raise StaleAttempt(f"job {job_id} has no MLflow run yet: stop")
    return AttemptSpec(
        job_id=job.id,
        attempt=attempt.attempt_no,
        kind=JobKind(job.kind),
        name=job.name,
        spec=job.spec,
        target=EvalTarget.model_validate(job.target) if job.target else None,
        checkpoint_dir=attempt.checkpoint_dir,
        resume_checkpoint=job.resume_checkpoint,
        mlflow_run_id=job.mlflow_run_id,
        workers=int(job.resources.get("workers") or 1),
        per_worker=WorkerResources.model_validate(
            {key: job.resources[key] for key in ("gpus", "cpus", "memory_gb") if job.resources.get(key) is not None}
        ),
    )


def record_heartbeat(session: Session, job_id: str, attempt_no: int, token: str, beat: Heartbeat) -> str:
    """Store progress; returns the control verb for the worker: 'continue' or 'stop'."""
    job, attempt = fenced_attempt(session, job_id, attempt_no, token)
    attempt.last_heartbeat_at = now()
    if beat.progress is not None:
        job.progress = beat.progress.model_dump(mode="json", exclude_none=True)
    if beat.epoch is not None:
        job.metrics_history = _with_epoch(job.metrics_history or [], beat.epoch, epochs=job.spec["train"]["epochs"])
    if job.status == JobStatus.SUBMITTED:
        transition(
            session,
            job_id,
            JobStatus.RUNNING,
            actor="worker",
            reason="first heartbeat",
            attempt_no=attempt_no,
            values={"started_at": now()},
        )
    return "stop" if job.status == JobStatus.CANCELLING or job.cancel_requested_at else "continue"


def _with_epoch(history: list[dict[str, Any]], report: EpochReport, *, epochs: int) -> list[dict[str, Any]]:
    """The history with this epoch's report in its place: one entry per epoch of the job, so what a
    worker sends cannot grow it past the job's length (a resumed attempt re-reports an epoch)."""
    if report.epoch >= epochs:
        raise InvalidSpec("epoch.epoch", f"epoch {report.epoch} is past the job's {epochs} epochs")
    kept = [entry for entry in history if entry.get("epoch") != report.epoch]
    return sorted([*kept, report.model_dump(mode="json")], key=lambda entry: int(entry.get("epoch", 0)))


def record_outcome(session: Session, job_id: str, attempt_no: int, token: str, outcome: AttemptOutcome) -> None:
    """Keep what the attempt reported; the control plane makes the transition once Ray says it ended."""
    job, attempt = fenced_attempt(session, job_id, attempt_no, token)
    if outcome.succeeded:
        result = outcome.train if job.kind == JobKind.TRAIN else outcome.eval
        if result is None:
            raise InvalidSpec(job.kind, f"a succeeded {job.kind} attempt reports its '{job.kind}' result")
        job.result = result.model_dump(mode="json")
    else:
        attempt.failure_class = outcome.error_class
        attempt.error_message = outcome.error_message
