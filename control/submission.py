"""Submitting a claimed attempt: its MLflow run (created once per job), its fencing token written
to a file only the service user can read (the token stays out of the Ray job's environment, which
Ray's dashboard shows), then the Ray job under the attempt's deterministic submission id."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from control.seams import Cluster, Tracking
from service.contracts import AttemptStatus
from service.db import session_scope
from service.db.models import Sweep
from service.jobs import attempts, store
from service.jobs.status import JobStatus
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)


class Submitter:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, settings: ServiceSettings
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.settings = settings
        self.last_dispatch_latency_s = 0.0

    def submit(self, job_id: str) -> None:
        """Never raises: a failed submission is noted on the attempt, whose claim then expires and is
        requeued by the reconciler; the other claimed jobs still go."""
        try:
            self._submit(job_id)
        except Exception as error:
            logger.exception("dispatcher.submit_failed job_id=%s", job_id)
            self._note_failure(job_id, f"{type(error).__name__}: {error}")

    def _note_failure(self, job_id: str, message: str) -> None:
        """Kept on the attempt: the reconciler quotes it if the job fails for want of a submission."""
        with session_scope(self.sessions) as session:
            attempt = attempts.current_attempt(session, store.get_job(session, job_id))
            if attempt is not None and attempt.status == AttemptStatus.CLAIMED:
                attempt.error_message = message[:2000]

    def _submit(self, job_id: str) -> None:
        name = self.settings.dispatcher_name
        with session_scope(self.sessions) as session:
            job = store.get_job(session, job_id)
            attempt = attempts.current_attempt(session, job)
            if job.status != JobStatus.CLAIMED or attempt is None:
                return
            if job.cancel_requested_at is not None:
                store.transition(
                    session,
                    job_id,
                    JobStatus.CANCELLED,
                    actor=name,
                    reason="cancelled before submission",
                    attempt_no=attempt.attempt_no,
                )
                attempt.status = AttemptStatus.STOPPED
                return
            run_needed = job.mlflow_run_id is None
            experiment, run_name, kind, owner = job.experiment, job.name, job.kind, job.owner
            tags = {"kind": kind, "owner": owner}
            parent = session.get(Sweep, job.sweep_id).mlflow_run_id if job.sweep_id else None  # type: ignore[union-attr]
            if parent is not None:
                tags["mlflow.parentRunId"] = parent  # a sweep's trial: a child of the sweep's run
        if run_needed:
            experiment_id, run_id = self.tracker.ensure_run(
                experiment=experiment, job_id=job_id, run_name=run_name, tags=tags
            )
            with session_scope(self.sessions) as session:
                job = store.get_job(session, job_id)
                job.mlflow_experiment_id, job.mlflow_run_id = experiment_id, run_id
        with session_scope(self.sessions) as session:
            job = store.get_job(session, job_id)
            attempt = attempts.current_attempt(session, job)
            assert attempt is not None
            submission, resources, created = attempt.ray_submission_id, dict(job.resources), job.created_at
            attempt_no, token, checkpoint_dir = attempt.attempt_no, attempt.fencing_token, attempt.checkpoint_dir
        token_file = write_token_file(Path(checkpoint_dir), attempt_no, token)
        env = {
            "ASCL_API_URL": self.settings.api_url,
            "ASCL_JOB_ID": job_id,
            "ASCL_ATTEMPT": str(attempt_no),
            "ASCL_TOKEN_FILE": str(token_file),
            "MLFLOW_TRACKING_URI": self.tracker.tracking_uri,
            "ASCL_HEARTBEAT_S": str(self.settings.heartbeat_interval_s),
            "ASCL_API_LOSS_S": str(self.settings.worker_api_loss_s),
        }
        if not float(resources.get("gpus") or 0):
            env["CUDA_VISIBLE_DEVICES"] = ""  # Ray leaves a zero-GPU job every GPU of its node: hide them
        if int(resources.get("workers") or 1) > 1:
            # Ray Train shows each GPU worker every GPU of the gang on its node; each sees only its own
            env["TRAIN_ENABLE_SHARE_CUDA_VISIBLE_DEVICES"] = "0"
        self.cluster.submit(
            submission,
            # exec: the attempt is the job supervisor's own child, so that it dies with it (a lost node)
            entrypoint=f"exec {self.settings.worker_python} -m workers.entrypoint",
            env=env,
            resources=resources,
            metadata={"service": "ascl", "job_id": job_id, "attempt": str(attempt_no)},
        )
        with session_scope(self.sessions) as session:
            moved = store.transition(
                session,
                job_id,
                JobStatus.SUBMITTED,
                actor=name,
                reason=f"submitted to Ray as {submission}",
                attempt_no=attempt_no,
                allowed_from=frozenset({JobStatus.CLAIMED}),
            )
            if moved is not None:
                attempts.get_attempt(session, job_id, attempt_no).status = AttemptStatus.SUBMITTED
        self.last_dispatch_latency_s = (store.now() - store.as_utc(created)).total_seconds()
        logger.info("job.submitted job_id=%s attempt=%d submission_id=%s", job_id, attempt_no, submission)


def write_token_file(directory: Path, attempt_no: int, token: str) -> Path:
    """The attempt's fencing token, readable by the service's user only (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".attempt-{attempt_no}.token"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path
