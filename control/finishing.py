"""Ending an attempt: the terminal (or retry) transition, then the side effects the control plane
guarantees after it — the MLflow run closed with a matching status, GPU time charged, the progress
phase marked ended, and the attempt's log tail kept in the database and in the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from control.seams import Cluster, Tracking
from service.contracts import AttemptStatus, FailureClass, Phase
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts, queueing, store
from service.jobs.status import JobStatus
from service.scheduling.model import Policy

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 300
LOG_TAIL_CHARACTERS = 64_000  # lines can be of any length: the database row stays small
RUN_STATUS = {JobStatus.SUCCEEDED: "FINISHED", JobStatus.CANCELLED: "KILLED"}  # MLflow status of an ended job


def run_status_of(status: JobStatus) -> str:
    return RUN_STATUS.get(status, "FAILED")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRef:
    job_id: str
    attempt_no: int
    submission_id: str
    claimed_at: datetime
    reached_ray: bool  # an attempt that never reached Ray held no GPU


class Finisher:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, *, actor: str, policy: Policy
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.actor = actor
        self.policy = policy

    def finish(
        self,
        a: AttemptRef,
        status: JobStatus,
        *,
        reason: str,
        attempt_status: AttemptStatus,
        error: tuple[FailureClass, str] | None = None,
        values: dict[str, Any] | None = None,
        also: Callable[[Session, Job], None] | None = None,
    ) -> bool:
        """A terminal transition and its side effects; False when another actor moved the job first.
        `also` runs in the transition's transaction: it happens if and only if the job moved."""
        changes = dict(values or {})
        # a success clears what an earlier, retried attempt left (e.g. its INFRA_LOST)
        changes |= {"error_class": error[0], "error_message": error[1]} if error else {}
        if status == JobStatus.SUCCEEDED:
            changes |= {"error_class": None, "error_message": None}
        with session_scope(self.sessions) as session:
            moved = store.transition(
                session, a.job_id, status, actor=self.actor, reason=reason, attempt_no=a.attempt_no, values=changes
            )
            if moved is None:
                return False
            job = store.get_job(session, a.job_id)
            if also is not None:
                also(session, job)
            self._end_attempt(session, job, a, attempt_status, error[0] if error else None)
            job.progress = {**(job.progress or {}), "phase": Phase.ENDED.value}
            run_id = job.mlflow_run_id
        if run_id is not None:
            self.tracker.finish_run(run_id, run_status_of(status))
        self.keep_log_tail(a.job_id, a.attempt_no, a.submission_id, run_id)
        logger.info("job.finished job_id=%s status=%s reason=%s", a.job_id, status, reason)
        return True

    def requeue_for_retry(self, a: AttemptRef, failure: FailureClass, message: str) -> bool:
        """An infrastructure loss with retries left: back to the queue, resuming from the checkpoint."""
        with session_scope(self.sessions) as session:
            job = store.get_job(session, a.job_id)
            moved = store.transition(
                session,
                a.job_id,
                JobStatus.QUEUED,
                actor=self.actor,
                attempt_no=a.attempt_no,
                reason=f"{failure}: {message}; retry {job.infra_failures + 1}/{job.max_infra_retries} resumes "
                "from the latest checkpoint",
                values={"error_class": failure, "error_message": message, "infra_failures": job.infra_failures + 1},
                allowed_from=frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING}),
            )
            if moved is None:
                return False
            self._end_attempt(session, job, a, AttemptStatus.LOST, failure)
            run_id = job.mlflow_run_id
        self.keep_log_tail(a.job_id, a.attempt_no, a.submission_id, run_id)
        return True

    def _end_attempt(
        self, session: Session, job: Job, a: AttemptRef, status: AttemptStatus, failure: FailureClass | None
    ) -> None:
        attempt = attempts.get_attempt(session, a.job_id, a.attempt_no)
        attempt.status, attempt.ended_at = status, store.now()
        if failure is not None and attempt.failure_class is None:
            attempt.failure_class = failure
        if a.reached_ray:  # its wall time from claim to end: GPU-seconds, and the owner's fair-share usage
            held_s = (store.now() - a.claimed_at).total_seconds()
            workers = int(job.resources.get("workers") or 1)
            job.gpu_seconds = (job.gpu_seconds or 0.0) + held_s * float(job.resources.get("gpus") or 0.0) * workers
            queueing.charge(
                session, queue=job.queue, owner=job.owner, resources=job.resources, seconds=held_s, policy=self.policy
            )

    def keep_log_tail(self, job_id: str, attempt_no: int, submission_id: str, run_id: str | None) -> None:
        """Ray's job history is not durable and is deleted after its retention: keep the end of the
        attempt's log in our database (GET /jobs/{id}/logs falls back to it) and in the MLflow run."""
        tail = log_tail(self.cluster.final_log(submission_id) or "")
        with session_scope(self.sessions) as session:
            attempts.get_attempt(session, job_id, attempt_no).log_tail = tail
        if run_id is not None and tail:
            self.tracker.log_text(run_id, tail, f"logs/attempt-{attempt_no}.log")


def log_tail(log: str) -> str:
    """The end of a log, as it is (a reader following the log finds its place in it): its last
    LOG_TAIL_LINES lines, and of those at most LOG_TAIL_CHARACTERS, from a line's start where one is."""
    tail = "".join(log.splitlines(keepends=True)[-LOG_TAIL_LINES:])
    if len(tail) <= LOG_TAIL_CHARACTERS:
        return tail
    cut = tail[-LOG_TAIL_CHARACTERS:]
    return cut[cut.index("\n") + 1 :] if "\n" in cut[:-1] else cut
