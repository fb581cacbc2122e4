"""The repair pass: what the per-attempt reconciliation cannot see. Ray executions of ours that are
not a current attempt of an unfinished job are stopped; ended executions past their retention are
deleted (their log tail kept first); MLflow runs still RUNNING for jobs that have ended (a crash
between the terminal transition and closing the run) are closed."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from control.decisions import RAY_ACTIVE
from control.finishing import Finisher, run_status_of
from control.seams import Cluster, Tracking
from service.db import session_scope
from service.db.models import Attempt, Job
from service.jobs import store
from service.jobs.status import ACTIVE, TERMINAL, JobStatus
from service.scheduling.model import Policy

logger = logging.getLogger(__name__)
# Ray's job monitor looks at each execution about once a second and writes its record again (FAILED,
# "job supervisor actor died") if the record is gone before it has seen the end: an execution deleted
# sooner than this after its end can come back (seen with Ray 2.60 on a loaded machine)
RAY_SETTLE_S = 30.0


class Repairer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cluster: Cluster,
        tracker: Tracking,
        *,
        ray_job_retention_s: float,
        policy: Policy,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.retention = timedelta(seconds=max(ray_job_retention_s, RAY_SETTLE_S))
        self.finisher = Finisher(sessions, cluster, tracker, actor="reconciler", policy=policy)
        self.repairs = 0

    def repair(self) -> None:
        ours = self.cluster.list_ours()
        wanted = self._current_submissions()
        for submission_id, ray_status in ours:
            if ray_status in RAY_ACTIVE and submission_id not in wanted:
                logger.warning("reconciler.orphan_stopped submission_id=%s", submission_id)
                self.cluster.stop(submission_id)
                self.repairs += 1
        self._delete_ended([submission_id for submission_id, ray_status in ours if ray_status not in RAY_ACTIVE])
        self._close_open_runs()

    def _current_submissions(self) -> set[str]:
        with session_scope(self.sessions) as session:
            return set(
                session.execute(
                    select(Attempt.ray_submission_id)
                    .join(Job, (Job.id == Attempt.job_id) & (Job.attempts_made == Attempt.attempt_no))
                    .where(Job.status.in_([s.value for s in ACTIVE]))
                ).scalars()
            )

    def _delete_ended(self, ended: list[str]) -> None:
        """Ray keeps every execution it ran, and list_ours() grows with them: delete those whose
        attempt ended more than the retention (at least RAY_SETTLE_S) ago, once their log tail is in
        our database."""
        if not ended:
            return
        cutoff = store.now() - self.retention
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
                self.finisher.keep_log_tail(job_id, attempt_no, submission_id, run_id)
            self.cluster.delete(submission_id)
            logger.info("reconciler.ray_job_deleted submission_id=%s", submission_id)

    def _close_open_runs(self) -> None:
        for run_id, job_id in self.tracker.open_runs():
            with session_scope(self.sessions) as session:
                job = session.get(Job, job_id)
                status = None if job is None else JobStatus(job.status)
            if status is None or status in TERMINAL:
                self.tracker.finish_run(run_id, "FAILED" if status is None else run_status_of(status))
                logger.warning("reconciler.run_closed run_id=%s job_id=%s job_status=%s", run_id, job_id, status)
                self.repairs += 1
