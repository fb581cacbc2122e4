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

from sqlalchemy.orm import Session, sessionmaker

from control.reconciler import Reconciler
from control.repair import Repairer
from control.repeated_failures import RepeatedFailures
from control.seams import Cluster, Tracking
from control.submission import Submitter
from control.sweeps import SweepController
from service.db import session_scope
from service.jobs import attempts, queueing, store
from service.jobs.status import JobStatus
from service.metrics import Metric
from service.scheduling.model import Running
from service.scheduling.placement import place
from service.scheduling.planner import Capacity, plan
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)


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
        self.failures = RepeatedFailures(logger, "dispatcher.cycle_failed")
        self.reconciler = Reconciler(sessions, cluster, tracker, settings)
        self.repairer = Repairer(
            sessions,
            cluster,
            tracker,
            ray_job_retention_s=settings.ray_job_retention_s,
            policy=settings.scheduling_policy,
        )
        self.submitter = Submitter(sessions, cluster, tracker, settings)
        self.sweeps = SweepController(sessions, tracker, settings)

    # the loop -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, wake: threading.Event, *, interval_s: float) -> None:
        while not stop.is_set():
            try:
                self.cycle()
            except Exception as error:  # the loop survives any failure; the next cycle reconciles
                self.failures.failed(error)
            else:
                self.failures.succeeded()
            wake.wait(interval_s)
            wake.clear()

    def cycle(self) -> None:
        started = time.perf_counter()
        self.reconcile()
        if started - self.last_repair >= self.settings.repair_interval_s:
            self.repair()
            self.last_repair = started
        self.sweeps.cycle()
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
                "ascl_dispatcher_cycle_failures_total", "counter", "Dispatcher cycles that failed.", self.failures.total
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
        """One plan over the whole queue (a fixed number of queries, whatever its length), then the
        claims it makes; jobs whose dependencies can no longer be met are cancelled first.

        A job is claimed only where its request fits what is free now, so when no queued request
        fits, no plan can claim anything: the cycle stops there instead of reading and ordering the
        whole queue (the usual case on a full cluster with a long queue)."""
        cluster = self._cluster()
        with session_scope(self.sessions) as session:
            self._cancel_unmeetable(session)
            running = queueing.running_jobs(session)
            cluster = _minus_pending(cluster, running)
            queueing.save_snapshot(session, cluster)
            if not any(place(request, cluster.free) for request in queueing.waiting_requests(session)):
                return
            state = queueing.load(session, running)
            queueing.resolve_eval_targets(session)  # after `load`: see its docstring
            result = plan(
                state.waiting,
                state.running,
                cluster,
                queues=state.queues,
                usage=state.usage,
                now=store.now(),
                policy=self.settings.scheduling_policy,
                explain=False,
            )
            claimed = []
            for job_id in result.claims:
                job = store.get_job(session, job_id)
                checkpoint_dir = str(self.settings.checkpoint_root / job.id)
                if attempts.claim(
                    session, job, dispatcher=self.settings.dispatcher_name, checkpoint_dir=checkpoint_dir
                ):
                    claimed.append(job.id)
        for job_id in claimed:
            self.submit(job_id)

    def submit(self, job_id: str) -> None:
        self.submitter.submit(job_id)

    def _cluster(self) -> Capacity:
        nodes = self.cluster.nodes()
        return Capacity(free=[free for free, _ in nodes], total=[total for _, total in nodes])

    def _cancel_unmeetable(self, session: Session) -> None:
        for job_id, parent_id, parent_status in queueing.failed_dependencies(session):
            store.transition(
                session,
                job_id,
                JobStatus.CANCELLED,
                actor=self.settings.dispatcher_name,
                reason=f"dependency: job {parent_id} ended {parent_status}",
                allowed_from=frozenset({JobStatus.QUEUED}),
                values={"error_class": "DEPENDENCY", "error_message": f"job {parent_id} ended {parent_status}"},
            )


def _minus_pending(cluster: Capacity, running: list[Running]) -> Capacity:
    """Ray's free capacity lags behind our claims: the jobs we claimed or submitted that Ray does not
    run yet are set aside on the nodes first (claimed ones never reached Ray's accounting at all)."""
    free = cluster.free
    for job in running:
        if job.started_at is None:  # claimed or submitted, not yet running
            free = place(job.request, free) or free
    return Capacity(free=free, total=cluster.total)
