"""Reconciliation: converge every active attempt with what Ray reports. `decisions.decide` says
what to do with each attempt; this module carries it out (transitions, retries, registration).

Our database is the source of truth; Ray and MLflow are brought in line with it, so any process
may crash at any line and the next pass finishes the job."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.auto_eval import standard_eval_of, tag_figures
from control.decisions import Action, AttemptView, Decision, Timeouts, decide
from control.finishing import AttemptRef, Finisher
from control.seams import Cluster, Tracking
from service.contracts import AttemptStatus, EvalResult, FailureClass, JobKind, TrainResult
from service.db import session_scope
from service.db.models import Attempt, Job
from service.jobs import attempts, store
from service.jobs.status import ACTIVE, JobStatus
from service.models import evaluation
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)
MAX_RECORD_TRIES = 3  # a success whose outcome cannot be recorded (e.g. registration refused) fails after these


@dataclass(frozen=True, slots=True, kw_only=True)
class _Active:
    ref: AttemptRef
    kind: JobKind
    view: AttemptView


class Reconciler:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, settings: ServiceSettings
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.settings = settings
        self.finisher = Finisher(sessions, cluster, tracker, actor="monitor", policy=settings.scheduling_policy)
        self.timeouts = Timeouts(claim_lease_s=settings.claim_lease_s, heartbeat_timeout_s=settings.heartbeat_timeout_s)

    def reconcile(self) -> None:
        for active in self._active():
            try:
                self._reconcile(active)
            except Exception:  # one broken job must not stop the others from being reconciled
                logger.exception("monitor.reconcile_failed job_id=%s", active.ref.job_id)

    def _active(self) -> list[_Active]:
        with session_scope(self.sessions) as session:
            rows = session.execute(
                select(Job, Attempt)
                .join(Attempt, (Attempt.job_id == Job.id) & (Attempt.attempt_no == Job.attempts_made))
                .where(Job.status.in_([s.value for s in ACTIVE]))
            ).all()
            return [
                _Active(
                    ref=AttemptRef(
                        job_id=job.id,
                        attempt_no=attempt.attempt_no,
                        submission_id=attempt.ray_submission_id,
                        claimed_at=store.as_utc(attempt.claimed_at),
                        reached_ray=attempt.status != AttemptStatus.CLAIMED,
                    ),
                    kind=JobKind(job.kind),
                    view=AttemptView(
                        job_status=JobStatus(job.status),
                        claimed_at=store.as_utc(attempt.claimed_at),
                        started_at=store.as_utc(job.started_at),
                        last_heartbeat_at=store.as_utc(attempt.last_heartbeat_at),
                        max_runtime_s=job.max_runtime_s,
                        cancel_requested=job.cancel_requested_at is not None,
                        has_result=job.result is not None,
                        failure_class=FailureClass(attempt.failure_class) if attempt.failure_class else None,
                        failure_message=attempt.error_message,
                    ),
                )
                for job, attempt in rows
            ]

    def _reconcile(self, a: _Active) -> None:
        decision = decide(a.view, self.cluster.status(a.ref.submission_id), now=store.now(), timeouts=self.timeouts)
        if decision.stop_ray:
            self.cluster.stop(a.ref.submission_id)
        match decision.action:
            case Action.WAIT:
                pass
            case Action.ADOPT:
                self._move_claim(a, JobStatus.SUBMITTED, "adopted the Ray execution", AttemptStatus.SUBMITTED)
            case Action.CANCEL_UNSUBMITTED:
                self._move_claim(a, JobStatus.CANCELLED, "cancelled; never submitted", AttemptStatus.EXPIRED)
            case Action.EXPIRE_CLAIM:
                self._expire_claim(a, decision.message)
            case Action.STOP:
                self.cluster.stop(a.ref.submission_id)
            case Action.CANCELLED:
                self.finisher.finish(
                    a.ref,
                    JobStatus.CANCELLED,
                    reason="cancelled; the Ray execution has ended",
                    attempt_status=AttemptStatus.STOPPED,
                )
            case Action.MARK_RUNNING:
                with session_scope(self.sessions) as session:
                    store.transition(
                        session,
                        a.ref.job_id,
                        JobStatus.RUNNING,
                        actor="monitor",
                        attempt_no=a.ref.attempt_no,
                        reason="Ray reports RUNNING",
                        values={"started_at": store.now()},
                        allowed_from=frozenset({JobStatus.SUBMITTED}),
                    )
            case Action.TIME_OUT:
                assert decision.failure is not None
                self.finisher.finish(
                    a.ref,
                    JobStatus.TIMED_OUT,
                    reason=decision.message,
                    attempt_status=AttemptStatus.STOPPED,
                    error=(decision.failure, decision.message),
                )
            case Action.SUCCEED:
                self._succeed(a)
            case Action.FAIL:
                self._fail_or_retry(a, decision)

    def _move_claim(self, a: _Active, target: JobStatus, reason: str, attempt_status: AttemptStatus) -> None:
        with session_scope(self.sessions) as session:
            if store.transition(
                session,
                a.ref.job_id,
                target,
                actor="reconciler",
                attempt_no=a.ref.attempt_no,
                reason=reason,
                allowed_from=frozenset({JobStatus.CLAIMED}),
            ):
                attempts.get_attempt(session, a.ref.job_id, a.ref.attempt_no).status = attempt_status

    def _expire_claim(self, a: _Active, last_error: str) -> None:
        """A claim that never reached Ray is requeued without using a retry (a dispatcher crash is not
        the job's fault); a job that Ray refuses claim after claim fails after `max_claim_expiries`."""
        expiries = self._claim_expiries(a) + 1
        limit = self.settings.max_claim_expiries
        if expiries < limit:
            reason = f"claim expired before submission reached Ray ({last_error}); requeued, no retry used "
            self._move_claim(a, JobStatus.QUEUED, f"{reason}({expiries}/{limit})", AttemptStatus.EXPIRED)
            return
        message = f"{expiries} consecutive claims never reached Ray; last: {last_error}"
        self.finisher.finish(
            a.ref,
            JobStatus.FAILED,
            reason=f"{FailureClass.SUBMIT_FAILED}: {message}",
            attempt_status=AttemptStatus.EXPIRED,
            error=(FailureClass.SUBMIT_FAILED, message),
        )

    def _claim_expiries(self, a: _Active) -> int:
        """How many attempts right before this one ended as expired claims."""
        with session_scope(self.sessions) as session:
            earlier = session.execute(
                select(Attempt.status)
                .where(Attempt.job_id == a.ref.job_id, Attempt.attempt_no < a.ref.attempt_no)
                .order_by(Attempt.attempt_no.desc())
            ).scalars()
            return sum(1 for _ in itertools.takewhile(lambda status: status == AttemptStatus.EXPIRED, earlier))

    def _fail_or_retry(self, a: _Active, decision: Decision) -> None:
        assert decision.failure is not None
        message = decision.message
        if decision.ask_ray_why:
            details = self.cluster.details(a.ref.submission_id)
            gone = details.get("node_gone")
            node = f"its node {gone[:12]} left the cluster; " if gone else ""
            message = f"lost: {node}{details.get('message') or 'the worker died'}"
        with session_scope(self.sessions) as session:
            job = store.get_job(session, a.ref.job_id)
            retry = decision.failure == FailureClass.INFRA_LOST and job.infra_failures < job.max_infra_retries
        if retry and self.finisher.requeue_for_retry(a.ref, decision.failure, message):
            return
        self.finisher.finish(
            a.ref,
            JobStatus.FAILED,
            reason=f"{decision.failure}: {message}",
            attempt_status=AttemptStatus.FAILED,
            error=(decision.failure, message),
        )

    def _succeed(self, a: _Active) -> None:
        """Register the model (train jobs) or tag the version with a standard evaluation's figures,
        then SUCCEEDED (with the version's standard eval job, unless the train job opted out). What
        the registry keeps refusing must not hold the job (and its resources) forever: after
        MAX_RECORD_TRIES it fails, saying why."""
        with session_scope(self.sessions) as session:
            job = store.get_job(session, a.ref.job_id)
            result, model_name, version = job.result, job.model_name, job.registered_model_version
            auto, run_id = job.auto_evaluate, job.mlflow_run_id
            standard = a.kind == JobKind.EVAL and evaluation.is_standard(session, job.id)
        if standard:
            try:
                tag_figures(self.tracker, EvalResult.model_validate(result), job_id=a.ref.job_id, run_id=run_id)
            except Exception as error:  # the registry's failure: bounded retries, as for registration
                self._record_failed(a, f"{type(error).__name__}: {error}", what="the figures could not be tagged")
                return
        if a.kind == JobKind.TRAIN and model_name and version is None:
            trained = TrainResult.model_validate(result)
            test = trained.test
            tags = {
                "attempt": str(a.ref.attempt_no),
                "threat_model": f"{test.get('norm')} eps={test.get('eps')}",
                "clean_acc": str(test.get("clean_acc")),
                "robust_acc": str(test.get("robust_acc")),
            }
            try:
                version = self.tracker.register(
                    model_uri=trained.model_uri, name=model_name, job_id=a.ref.job_id, tags=tags
                )
            except Exception as error:  # the registry's failure, not ours: bounded retries, then a clear end
                self._record_failed(a, f"{type(error).__name__}: {error}", what="the model could not be registered")
                return
        evaluate = a.kind == JobKind.TRAIN and auto and self.settings.auto_eval and version is not None
        self.finisher.finish(
            a.ref,
            JobStatus.SUCCEEDED,
            reason="the attempt finished and reported its result",
            attempt_status=AttemptStatus.SUCCEEDED,
            values={"registered_model_version": version},
            also=standard_eval_of(str(version), self.settings.standard_eval) if evaluate else None,
        )

    def _record_failed(self, a: _Active, message: str, *, what: str) -> None:
        with session_scope(self.sessions) as session:
            attempt = attempts.get_attempt(session, a.ref.job_id, a.ref.attempt_no)
            attempt.record_failures = tries = (attempt.record_failures or 0) + 1
        logger.warning("monitor.record_failed job_id=%s try=%d %s", a.ref.job_id, tries, message)
        if tries >= MAX_RECORD_TRIES:
            text = f"{what} after {tries} tries: {message}"
            self.finisher.finish(
                a.ref,
                JobStatus.FAILED,
                reason=f"{FailureClass.UNRECORDABLE}: {text}",
                attempt_status=AttemptStatus.FAILED,
                error=(FailureClass.UNRECORDABLE, text),
            )
