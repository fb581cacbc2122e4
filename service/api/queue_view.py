"""Waiting jobs explained: the same plan the dispatcher claims by, computed here over the whole queue
with the cluster the dispatcher last saw, and kept for a second (listing a page of jobs computes it
once; a job that just changed shows its new place within that second)."""

from __future__ import annotations

import math
import time
from threading import Lock

from sqlalchemy.orm import Session

from service.jobs import queueing, store
from service.scheduling.model import Explanation, Plan, Policy
from service.scheduling.planner import Capacity, plan

UNKNOWN_CLUSTER = Capacity(free=[{}], total=[{"GPU": math.inf, "CPU": math.inf, "memory": math.inf}])


class QueueView:
    def __init__(self, policy: Policy, *, ttl_s: float = 1.0) -> None:
        self.policy = policy
        self.ttl_s = ttl_s
        self._plan: tuple[float, Plan] | None = None
        self._lock = Lock()

    def explain(self, session: Session, job_id: str) -> Explanation | None:
        known = self.current(session).explanations.get(job_id)
        if known is None:  # queued after the plan was made: plan again
            self.forget()
            known = self.current(session).explanations.get(job_id)
        return known

    def current(self, session: Session) -> Plan:
        with self._lock:
            if self._plan is not None and time.monotonic() - self._plan[0] < self.ttl_s:
                return self._plan[1]
        state = queueing.load(session)
        seen = queueing.snapshot(session)
        capacity = seen[0] if seen is not None else UNKNOWN_CLUSTER  # no dispatcher has run yet
        fresh = plan(
            state.waiting,
            state.running,
            capacity,
            queues=state.queues,
            usage=state.usage,
            now=store.now(),
            policy=self.policy,
        )
        with self._lock:
            self._plan = (time.monotonic(), fresh)
        return fresh

    def forget(self) -> None:
        with self._lock:
            self._plan = None
