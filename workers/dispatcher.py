"""The control plane's loop: reconcile active attempts with Ray, then claim and submit queued jobs.

Our database is the source of truth; Ray and MLflow are reconciled against it every cycle, so any
process may crash at any line. Transactions never span a network call: claim (commit) → MLflow
run (commit) → Ray submit → CLAIMED→SUBMITTED (commit). A claim whose submission never reached
Ray goes back to the queue without using a retry; a submission that did is adopted by its id."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_scope
from service.db.models import Job
from service.jobs import store
from service.jobs.status import ACTIVE, JobStatus
from workers.control import Cluster, DispatchSettings, Tracking
from workers.reconciler import Reconciler

__all__ = ["DispatchSettings", "Dispatcher"]
logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, settings: DispatchSettings
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.settings = settings
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.last_dispatch_latency_s = 0.0
        self.last_repair = float("-inf")
        self.reconciler = Reconciler(sessions, cluster, tracker, settings)

    # the loop -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, wake: threading.Event, *, interval_s: float) -> None:
        while not stop.is_set():
            try:
                self.cycle()
            except Exception:  # the loop survives any single failure; the next cycle reconciles
                logger.exception("dispatcher.cycle_failed")
            wake.wait(interval_s)
            wake.clear()

    def cycle(self) -> None:
        started = time.perf_counter()
        self.reconcile()
        if started - self.last_repair >= self.settings.repair_interval_s:
            self.repair()
            self.last_repair = started
        self.dispatch()
        self.cycles += 1
        self.last_cycle_s = time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        return {
            "ascl_dispatcher_cycles_total": self.cycles,
            "ascl_dispatcher_last_cycle_seconds": self.last_cycle_s,
            "ascl_dispatch_latency_seconds": self.last_dispatch_latency_s,
            "ascl_reconciler_repairs_total": self.reconciler.repairs,
        }

    # claiming -----------------------------------------------------------------------------------
    def dispatch(self) -> None:
        free = self._free_resources()
        claimed: list[str] = []
        with session_scope(self.sessions) as session:
            for job in store.queued_candidates(session, limit=self.settings.window):
                if not _fits(job.resources, free):
                    continue  # admission control: never hand Ray work it cannot place now
                checkpoint_dir = str(self.settings.checkpoint_root / job.id)
                if store.claim(session, job, dispatcher=self.settings.name, checkpoint_dir=checkpoint_dir):
                    claimed.append(job.id)
                    free = _subtract(free, job.resources)
        for job_id in claimed:
            try:
                self.submit(job_id)
            except Exception as error:  # the claim expires and the reconciler requeues it; the others still go
                logger.exception("dispatcher.submit_failed job_id=%s", job_id)
                self._note_submit_failure(job_id, f"{type(error).__name__}: {error}")

    def _note_submit_failure(self, job_id: str, message: str) -> None:
        """Kept on the attempt: the reconciler quotes it if the job fails for want of a submission."""
        with session_scope(self.sessions) as session:
            attempt = store.current_attempt(session, store.get_job(session, job_id))
            if attempt is not None and attempt.status == "CLAIMED":
                attempt.error_message = message[:2000]

    def _free_resources(self) -> dict[str, float]:
        """The smaller of Ray's view and ours: Ray lags behind what we just claimed, and our own
        accounting does not see foreign users of the cluster."""
        total, available = self.cluster.total(), self.cluster.available()
        with session_scope(self.sessions) as session:
            held: list[dict[str, Any]] = list(
                session.scalars(select(Job.resources).where(Job.status.in_([s.value for s in ACTIVE])))
            )
        ours = dict(total)
        for resources in held:
            ours = _subtract(ours, resources)
        return {key: min(available.get(key, 0.0), ours.get(key, 0.0)) for key in total}

    def submit(self, job_id: str) -> None:
        with session_scope(self.sessions) as session:
            job = store.get_job(session, job_id)
            attempt = store.current_attempt(session, job)
            if job.status != JobStatus.CLAIMED or attempt is None:
                return
            if job.cancel_requested_at is not None:
                store.transition(
                    session,
                    job_id,
                    JobStatus.CANCELLED,
                    actor=self.settings.name,
                    reason="cancelled before submission",
                    attempt_no=attempt.attempt_no,
                )
                attempt.status = "STOPPED"
                return
            run_needed = job.mlflow_run_id is None
            experiment, name, kind, owner = job.experiment, job.name, job.kind, job.owner
        if run_needed:
            experiment_id, run_id = self.tracker.ensure_run(
                experiment=experiment, job_id=job_id, run_name=name, tags={"kind": kind, "owner": owner}
            )
            with session_scope(self.sessions) as session:
                job = store.get_job(session, job_id)
                job.mlflow_experiment_id, job.mlflow_run_id = experiment_id, run_id
        with session_scope(self.sessions) as session:
            job = store.get_job(session, job_id)
            attempt = store.current_attempt(session, job)
            assert attempt is not None
            submission, resources, created = attempt.ray_submission_id, dict(job.resources), job.created_at
            env = {
                "ASCL_API_URL": self.settings.api_url,
                "ASCL_JOB_ID": job_id,
                "ASCL_ATTEMPT": str(attempt.attempt_no),
                "ASCL_TOKEN": attempt.fencing_token,
                "MLFLOW_TRACKING_URI": self.tracker.tracking_uri,
                "ASCL_HEARTBEAT_S": str(self.settings.heartbeat_interval_s),
            }
            attempt_no = attempt.attempt_no
        self.cluster.submit(
            submission,
            entrypoint=f"{self.settings.worker_python} -m workers.entrypoint",
            env=env,
            resources=resources,
            metadata={"service": "ascl", "job_id": job_id, "attempt": str(attempt_no)},
        )
        with session_scope(self.sessions) as session:
            moved = store.transition(
                session,
                job_id,
                JobStatus.SUBMITTED,
                actor=self.settings.name,
                reason=f"submitted to Ray as {submission}",
                attempt_no=attempt_no,
                allowed_from=frozenset({JobStatus.CLAIMED}),
            )
            if moved is not None:
                store.get_attempt(session, job_id, attempt_no).status = "SUBMITTED"
        self.last_dispatch_latency_s = (store.now() - store.as_utc(created)).total_seconds()
        logger.info("job.submitted job_id=%s attempt=%d submission_id=%s", job_id, attempt_no, submission)

    # monitoring ---------------------------------------------------------------------------------

    # reconciliation (workers/reconciler.py) ----------------------------------------------------
    def reconcile(self) -> None:
        self.reconciler.reconcile()

    def repair(self) -> None:
        self.reconciler.repair()


RESOURCE_KEYS = {"gpus": "GPU", "cpus": "CPU", "memory_gb": "memory"}


def _as_ray(resources: dict[str, Any]) -> dict[str, float]:
    ray = {RESOURCE_KEYS[k]: float(v) for k, v in resources.items() if k in RESOURCE_KEYS and v}
    if "memory" in ray:
        ray["memory"] *= 2**30
    return ray


def _fits(resources: dict[str, Any], free: dict[str, float]) -> bool:
    return all(free.get(key, 0.0) + 1e-9 >= amount for key, amount in _as_ray(resources).items())


def _subtract(free: dict[str, float], resources: dict[str, Any]) -> dict[str, float]:
    left = dict(free)
    for key, amount in _as_ray(resources).items():
        left[key] = left.get(key, 0.0) - amount
    return left
