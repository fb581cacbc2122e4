"""Reconciliation: converge every active attempt with what Ray reports, apply terminal transitions
and retries, and repair what no attempt shows (orphaned Ray executions, MLflow runs left open).

Our database is the source of truth; Ray and MLflow are brought in line with it, so any process
may crash at any line and the next pass finishes the job."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_scope
from service.db.models import Attempt, Job
from service.jobs import store
from service.jobs.status import ACTIVE, TERMINAL, FailureClass, JobStatus
from workers.control import Cluster, DispatchSettings, Tracking

logger = logging.getLogger(__name__)
RAY_ACTIVE = ("PENDING", "RUNNING")
RUN_STATUS = {JobStatus.SUCCEEDED: "FINISHED", JobStatus.CANCELLED: "KILLED"}  # MLflow status of an ended job
LOG_TAIL_LINES = 300


@dataclass(frozen=True, slots=True)
class _Active:
    job_id: str
    status: str
    kind: str
    attempt_no: int
    submission_id: str
    claimed_at: datetime
    started_at: datetime | None
    last_heartbeat_at: datetime | None
    max_runtime_s: int | None
    cancel_requested: bool
    has_result: bool
    failure_class: str | None
    failure_message: str | None


class Reconciler:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, settings: DispatchSettings
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.settings = settings
        self.repairs = 0

    def reconcile(self) -> None:
        for active in self._active():
            try:
                self._reconcile(active)
            except Exception:  # one broken job must not stop the others from being reconciled
                logger.exception("monitor.reconcile_failed job_id=%s", active.job_id)

    def repair(self) -> None:
        """What the per-attempt reconciliation cannot see: Ray executions of ours that are not a
        current attempt of an unfinished job (stopped), ended executions past their retention
        (deleted, their log tail kept), and MLflow runs still RUNNING for jobs that have ended, e.g.
        after a crash between the terminal transition and closing the run (closed)."""
        with session_scope(self.sessions) as session:
            wanted = set(
                session.execute(
                    select(Attempt.ray_submission_id)
                    .join(Job, (Job.id == Attempt.job_id) & (Job.attempts_made == Attempt.attempt_no))
                    .where(Job.status.in_([s.value for s in ACTIVE]))
                ).scalars()
            )
        ours = self.cluster.list_ours()
        for submission_id, ray_status in ours:
            if ray_status in RAY_ACTIVE and submission_id not in wanted:
                logger.warning("reconciler.orphan_stopped submission_id=%s", submission_id)
                self.cluster.stop(submission_id)
                self.repairs += 1
        self._delete_ended([submission_id for submission_id, ray_status in ours if ray_status not in RAY_ACTIVE])
        for run_id, job_id in self.tracker.open_runs():
            with session_scope(self.sessions) as session:
                job = session.get(Job, job_id)
                status = None if job is None else JobStatus(job.status)
            if status is None or status in TERMINAL:
                self.tracker.finish_run(run_id, "FAILED" if status is None else RUN_STATUS.get(status, "FAILED"))
                logger.warning("reconciler.run_closed run_id=%s job_id=%s job_status=%s", run_id, job_id, status)
                self.repairs += 1

    def _delete_ended(self, ended: list[str]) -> None:
        """Ray keeps every execution it ran, and list_ours() grows with them: delete those whose
        attempt ended more than `ray_job_retention_s` ago, once their log tail is in our database."""
        if not ended:
            return
        cutoff = store.now() - timedelta(seconds=self.settings.ray_job_retention_s)
        with session_scope(self.sessions) as session:
            rows = session.execute(
                select(
                    Attempt.job_id, Attempt.attempt_no, Attempt.ray_submission_id, Attempt.log_tail, Job.mlflow_run_id
                )
                .join(Job, Job.id == Attempt.job_id)
                .where(Attempt.ray_submission_id.in_(ended), Attempt.ended_at < cutoff)
            ).all()
        for job_id, attempt_no, submission_id, log_tail, run_id in rows:
            if log_tail is None:  # a crash came between the attempt's end and keeping its tail
                self._keep_log_tail(job_id, attempt_no, submission_id, run_id)
            self.cluster.delete(submission_id)
            logger.info("reconciler.ray_job_deleted submission_id=%s", submission_id)

    def _active(self) -> list[_Active]:
        with session_scope(self.sessions) as session:
            rows = session.execute(
                select(Job, Attempt)
                .join(Attempt, (Attempt.job_id == Job.id) & (Attempt.attempt_no == Job.attempts_made))
                .where(Job.status.in_([s.value for s in ACTIVE]))
            ).all()
            return [
                _Active(
                    job.id,
                    job.status,
                    job.kind,
                    attempt.attempt_no,
                    attempt.ray_submission_id,
                    store.as_utc(attempt.claimed_at),
                    store.as_utc(job.started_at),
                    store.as_utc(attempt.last_heartbeat_at),
                    job.max_runtime_s,
                    job.cancel_requested_at is not None,
                    job.result is not None,
                    attempt.failure_class,
                    attempt.error_message,
                )
                for job, attempt in rows
            ]

    def _reconcile(self, a: _Active) -> None:
        ray_status = self.cluster.status(a.submission_id)
        if a.status == JobStatus.CLAIMED:
            self._reconcile_claimed(a, ray_status)
        elif a.status == JobStatus.CANCELLING:
            if ray_status in RAY_ACTIVE:
                self.cluster.stop(a.submission_id)
            else:
                self._finish(
                    a,
                    JobStatus.CANCELLED,
                    "KILLED",
                    reason="cancelled; the Ray execution has ended",
                    attempt_status="STOPPED",
                )
        elif ray_status in RAY_ACTIVE:
            self._watch_running(a, ray_status)
        elif ray_status == "SUCCEEDED" and a.has_result:
            self._succeed(a)
        elif ray_status == "SUCCEEDED":
            self._fail_or_retry(a, FailureClass.INFRA_LOST, "the attempt exited without reporting a result")
        elif ray_status == "FAILED" and a.failure_class is not None:
            self._fail_or_retry(a, a.failure_class, a.failure_message or "the attempt failed")
        elif ray_status == "FAILED":
            detail = self.cluster.details(a.submission_id).get("message") or "the worker process died"
            self._fail_or_retry(a, FailureClass.INFRA_LOST, f"lost: {detail}")
        elif ray_status == "STOPPED":
            self._fail_or_retry(a, FailureClass.INFRA_LOST, "the Ray execution was stopped outside the service")
        else:
            self._fail_or_retry(a, FailureClass.INFRA_LOST, "Ray has no record of the attempt (head restarted?)")

    def _reconcile_claimed(self, a: _Active, ray_status: str | None) -> None:
        """Adopt a submission Ray already has; requeue (or cancel) a claim that never reached Ray.
        A dispatcher crash is not the job's fault, so a requeue uses no retry; but a job that Ray
        refuses claim after claim fails after `max_claim_expiries`, instead of cycling forever."""
        if ray_status is not None:
            target, reason, attempt_status = JobStatus.SUBMITTED, "adopted the Ray execution", "SUBMITTED"
        elif store.now() - a.claimed_at < timedelta(seconds=self.settings.claim_lease_s):
            return  # the claiming dispatcher may still be submitting
        elif a.cancel_requested:
            target, reason, attempt_status = JobStatus.CANCELLED, "cancelled; never submitted", "EXPIRED"
        elif (expiries := self._claim_expiries(a) + 1) >= self.settings.max_claim_expiries:
            message = f"{expiries} consecutive claims never reached Ray; last: {_submit_error(a)}"
            self._finish(
                a,
                JobStatus.FAILED,
                "FAILED",
                reason=f"{FailureClass.SUBMIT_FAILED}: {message}",
                attempt_status="EXPIRED",
                error=(FailureClass.SUBMIT_FAILED, message),
            )
            return
        else:
            target, attempt_status = JobStatus.QUEUED, "EXPIRED"
            reason = (
                f"claim expired before submission reached Ray ({_submit_error(a)}); "
                f"requeued, no retry used ({expiries}/{self.settings.max_claim_expiries})"
            )
        with session_scope(self.sessions) as session:
            if store.transition(
                session,
                a.job_id,
                target,
                actor="reconciler",
                attempt_no=a.attempt_no,
                reason=reason,
                allowed_from=frozenset({JobStatus.CLAIMED}),
            ):
                store.get_attempt(session, a.job_id, a.attempt_no).status = attempt_status

    def _claim_expiries(self, a: _Active) -> int:
        """How many attempts right before this one ended as expired claims."""
        with session_scope(self.sessions) as session:
            earlier = session.execute(
                select(Attempt.status)
                .where(Attempt.job_id == a.job_id, Attempt.attempt_no < a.attempt_no)
                .order_by(Attempt.attempt_no.desc())
            ).scalars()
            return sum(1 for _ in itertools.takewhile(lambda status: status == "EXPIRED", earlier))

    def _watch_running(self, a: _Active, ray_status: str) -> None:
        now = store.now()
        if ray_status == "RUNNING" and a.status == JobStatus.SUBMITTED:
            with session_scope(self.sessions) as session:
                store.transition(
                    session,
                    a.job_id,
                    JobStatus.RUNNING,
                    actor="monitor",
                    attempt_no=a.attempt_no,
                    reason="Ray reports RUNNING",
                    values={"started_at": now},
                    allowed_from=frozenset({JobStatus.SUBMITTED}),
                )
            return
        started = a.started_at or a.claimed_at
        if a.max_runtime_s is not None and now - started > timedelta(seconds=a.max_runtime_s):
            self.cluster.stop(a.submission_id)
            self._finish(
                a,
                JobStatus.TIMED_OUT,
                "FAILED",
                reason=f"max_runtime_s {a.max_runtime_s} exceeded",
                attempt_status="STOPPED",
                error=(FailureClass.TIMEOUT, "max_runtime_s exceeded"),
            )
            return
        last_sign = a.last_heartbeat_at or a.claimed_at
        if ray_status == "RUNNING" and now - last_sign > timedelta(seconds=self.settings.heartbeat_timeout_s):
            self.cluster.stop(a.submission_id)
            self._fail_or_retry(a, FailureClass.INFRA_LOST, "no heartbeat within heartbeat_timeout_s: hung")

    def _fail_or_retry(self, a: _Active, failure: str, message: str) -> None:
        with session_scope(self.sessions) as session:
            job = store.get_job(session, a.job_id)
            retry = failure == FailureClass.INFRA_LOST and job.infra_failures < job.max_infra_retries
            values = {"error_class": failure, "error_message": message}
            if retry:
                moved = store.transition(
                    session,
                    a.job_id,
                    JobStatus.QUEUED,
                    actor="monitor",
                    attempt_no=a.attempt_no,
                    reason=f"{failure}: {message}; retry {job.infra_failures + 1}/{job.max_infra_retries} resumes "
                    "from the latest checkpoint",
                    values={**values, "infra_failures": job.infra_failures + 1},
                    allowed_from=frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING}),
                )
                if moved is not None:
                    attempt = store.get_attempt(session, a.job_id, a.attempt_no)
                    attempt.status, attempt.failure_class, attempt.ended_at = "LOST", failure, store.now()
                    _charge_gpu_time(job, a)
                run_id = job.mlflow_run_id
        if retry:
            self._keep_log_tail(a.job_id, a.attempt_no, a.submission_id, run_id)
            return
        self._finish(
            a,
            JobStatus.FAILED,
            "FAILED",
            reason=f"{failure}: {message}",
            attempt_status="FAILED",
            error=(failure, message),
        )

    def _succeed(self, a: _Active) -> None:
        with session_scope(self.sessions) as session:
            job = store.get_job(session, a.job_id)
            result, model_name, version = dict(job.result or {}), job.model_name, job.registered_model_version
        if a.kind == "train" and model_name and version is None:
            test = result.get("test") or {}
            tags = {
                "attempt": str(a.attempt_no),
                "threat_model": f"{test.get('norm')} eps={test.get('eps')}",
                "clean_acc": str(test.get("clean_acc")),
                "robust_acc": str(test.get("robust_acc")),
            }
            version = self.tracker.register(model_uri=result["model_uri"], name=model_name, job_id=a.job_id, tags=tags)
        self._finish(
            a,
            JobStatus.SUCCEEDED,
            "FINISHED",
            reason="the attempt finished and reported its result",
            attempt_status="SUCCEEDED",
            values={"registered_model_version": version},
        )

    def _finish(
        self,
        a: _Active,
        status: JobStatus,
        run_status: str,
        *,
        reason: str,
        attempt_status: str,
        error: tuple[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        """A terminal transition, then the side effects the reconciler guarantees: the MLflow run
        closed with a matching status and the attempt's log tail saved next to it."""
        changes = dict(values or {})
        if error is not None:
            changes |= {"error_class": error[0], "error_message": error[1]}
        with session_scope(self.sessions) as session:
            moved = store.transition(
                session, a.job_id, status, actor="monitor", reason=reason, attempt_no=a.attempt_no, values=changes
            )
            if moved is None:
                return
            attempt = store.get_attempt(session, a.job_id, a.attempt_no)
            attempt.status, attempt.ended_at = attempt_status, store.now()
            job = store.get_job(session, a.job_id)
            _charge_gpu_time(job, a)
            run_id = job.mlflow_run_id
        if run_id is not None:
            self.tracker.finish_run(run_id, run_status)
        self._keep_log_tail(a.job_id, a.attempt_no, a.submission_id, run_id)
        logger.info("job.finished job_id=%s status=%s reason=%s", a.job_id, status, reason)

    def _keep_log_tail(self, job_id: str, attempt_no: int, submission_id: str, run_id: str | None) -> None:
        """Ray's job history is not durable and is deleted after its retention: keep the end of the
        attempt's log in our database (GET /jobs/{id}/logs falls back to it) and in the MLflow run."""
        tail = "\n".join((self.cluster.logs(submission_id) or "").splitlines()[-LOG_TAIL_LINES:])
        with session_scope(self.sessions) as session:
            store.get_attempt(session, job_id, attempt_no).log_tail = tail
        if run_id is not None and tail:
            self.tracker.log_text(run_id, tail, f"logs/attempt-{attempt_no}.log")


def _submit_error(a: _Active) -> str:
    """What the dispatcher recorded when its submission of this claim failed."""
    return a.failure_message or "no error seen"


def _charge_gpu_time(job: Job, a: _Active) -> None:
    """GPU-seconds of an ended attempt: its wall time from claim to end times the GPUs it held."""
    if a.status == JobStatus.CLAIMED:
        return  # never reached Ray: it held no GPU
    job.gpu_seconds = (job.gpu_seconds or 0.0) + (store.now() - a.claimed_at).total_seconds() * float(
        job.resources.get("gpus") or 0.0
    )
