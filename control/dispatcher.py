"""The control plane's loop: reconcile active attempts with Ray, repair now and then, then claim
queued jobs that fit and submit them.

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

from control.reconciler import Reconciler
from control.repair import Repairer
from control.seams import Cluster, Tracking
from control.submission import Submitter
from service.db import session_scope
from service.db.models import Job
from service.jobs import attempts, store
from service.jobs.status import ACTIVE
from service.metrics import Metric
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)
WINDOW = 50  # queued jobs considered per cycle


class Dispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], cluster: Cluster, tracker: Tracking, settings: ServiceSettings
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.tracker = tracker
        self.settings = settings
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.last_repair = float("-inf")
        self.reconciler = Reconciler(sessions, cluster, tracker, settings)
        self.repairer = Repairer(sessions, cluster, tracker, ray_job_retention_s=settings.ray_job_retention_s)
        self.submitter = Submitter(sessions, cluster, tracker, settings)

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

    def reconcile(self) -> None:
        self.reconciler.reconcile()

    def repair(self) -> None:
        self.repairer.repair()

    def metrics(self) -> list[Metric]:
        return [
            Metric.single("ascl_dispatcher_cycles_total", "counter", "Dispatcher cycles run.", self.cycles),
            Metric.single(
                "ascl_dispatcher_last_cycle_seconds",
                "gauge",
                "Duration of the last dispatcher cycle.",
                self.last_cycle_s,
            ),
            Metric.single(
                "ascl_dispatch_latency_seconds",
                "gauge",
                "Queue time (creation to Ray submission) of the last job submitted.",
                self.submitter.last_dispatch_latency_s,
            ),
            Metric.single(
                "ascl_reconciler_repairs_total",
                "counter",
                "Orphaned Ray executions stopped and MLflow runs closed by the repair pass.",
                self.repairer.repairs,
            ),
        ]

    # claiming -----------------------------------------------------------------------------------
    def dispatch(self) -> None:
        free = self._free_resources()
        claimed: list[str] = []
        with session_scope(self.sessions) as session:
            for job in store.queued_candidates(session, limit=WINDOW):
                if not fits(job.resources, free):
                    continue  # admission control: never hand Ray work it cannot place now
                checkpoint_dir = str(self.settings.checkpoint_root / job.id)
                if attempts.claim(
                    session, job, dispatcher=self.settings.dispatcher_name, checkpoint_dir=checkpoint_dir
                ):
                    claimed.append(job.id)
                    free = subtract(free, job.resources)
        for job_id in claimed:
            self.submit(job_id)

    def submit(self, job_id: str) -> None:
        self.submitter.submit(job_id)

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
            ours = subtract(ours, resources)
        return {key: min(available.get(key, 0.0), ours.get(key, 0.0)) for key in total}


RESOURCE_KEYS = {"gpus": "GPU", "cpus": "CPU", "memory_gb": "memory"}


def as_ray(resources: dict[str, Any]) -> dict[str, float]:
    ray = {RESOURCE_KEYS[k]: float(v) for k, v in resources.items() if k in RESOURCE_KEYS and v}
    if "memory" in ray:
        ray["memory"] *= 2**30
    return ray


def fits(resources: dict[str, Any], free: dict[str, float]) -> bool:
    return all(free.get(key, 0.0) + 1e-9 >= amount for key, amount in as_ray(resources).items())


def subtract(free: dict[str, float], resources: dict[str, Any]) -> dict[str, float]:
    left = dict(free)
    for key, amount in as_ray(resources).items():
        left[key] = left.get(key, 0.0) - amount
    return left
