"""The reconciler's decision table as a pure function: what to do with one active attempt, given
what the database says about it and what Ray reports. No I/O here, so every row is unit-tested
without Ray (tests/control/test_decisions.py); `reconciler.py` carries the decisions out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from service.contracts import FailureClass
from service.jobs.status import JobStatus

RAY_ACTIVE = frozenset({"PENDING", "RUNNING"})


class Action(StrEnum):
    WAIT = "wait"  # nothing to do this cycle
    ADOPT = "adopt"  # CLAIMED, and Ray has the submission: it reached Ray, adopt it
    EXPIRE_CLAIM = "expire claim"  # CLAIMED past its lease and Ray never got it: requeue (or fail)
    CANCEL_UNSUBMITTED = "cancel unsubmitted"  # same, but a cancel was requested
    STOP = "stop"  # cancel requested while Ray still runs it: ask Ray to stop
    CANCELLED = "cancelled"  # cancel requested and Ray's execution ended
    MARK_RUNNING = "mark running"
    TIME_OUT = "time out"
    SUCCEED = "succeed"
    FAIL = "fail"  # fail, or retry when the failure is an infrastructure loss and budget is left


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptView:
    """What the database knows about a job's current attempt."""

    job_status: JobStatus
    claimed_at: datetime
    started_at: datetime | None
    last_heartbeat_at: datetime | None
    max_runtime_s: int | None
    cancel_requested: bool
    has_result: bool
    failure_class: FailureClass | None  # what the worker reported, if it failed
    failure_message: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    failure: FailureClass | None = None
    message: str = ""
    ask_ray_why: bool = False  # append Ray's own account of the failure to the message
    stop_ray: bool = False  # Ray still runs the execution: stop it first


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    claim_lease_s: float
    heartbeat_timeout_s: float


def decide(a: AttemptView, ray_status: str | None, *, now: datetime, timeouts: Timeouts) -> Decision:
    if a.job_status == JobStatus.CLAIMED:
        return _claimed(a, ray_status, now=now, timeouts=timeouts)
    if a.job_status == JobStatus.CANCELLING:
        return Decision(Action.STOP) if ray_status in RAY_ACTIVE else Decision(Action.CANCELLED)
    if ray_status in RAY_ACTIVE:
        return _active(a, ray_status, now=now, timeouts=timeouts)
    return _ended(a, ray_status)


def _claimed(a: AttemptView, ray_status: str | None, *, now: datetime, timeouts: Timeouts) -> Decision:
    if ray_status is not None:
        return Decision(Action.ADOPT)
    if now - a.claimed_at < timedelta(seconds=timeouts.claim_lease_s):
        return Decision(Action.WAIT)  # the claiming dispatcher may still be submitting
    if a.cancel_requested:
        return Decision(Action.CANCEL_UNSUBMITTED)
    return Decision(Action.EXPIRE_CLAIM, message=a.failure_message or "no error seen")


def _active(a: AttemptView, ray_status: str, *, now: datetime, timeouts: Timeouts) -> Decision:
    if ray_status == "RUNNING" and a.job_status == JobStatus.SUBMITTED:
        return Decision(Action.MARK_RUNNING)
    started = a.started_at or a.claimed_at
    if a.max_runtime_s is not None and now - started > timedelta(seconds=a.max_runtime_s):
        message = f"max_runtime_s {a.max_runtime_s} exceeded"
        return Decision(Action.TIME_OUT, FailureClass.TIMEOUT, message, stop_ray=True)
    last_sign = a.last_heartbeat_at or a.claimed_at
    if ray_status == "RUNNING" and now - last_sign > timedelta(seconds=timeouts.heartbeat_timeout_s):
        hung = "no heartbeat within heartbeat_timeout_s: hung"
        return Decision(Action.FAIL, FailureClass.INFRA_LOST, hung, stop_ray=True)
    return Decision(Action.WAIT)


def _ended(a: AttemptView, ray_status: str | None) -> Decision:
    lost = FailureClass.INFRA_LOST
    if ray_status == "SUCCEEDED":
        if a.has_result:
            return Decision(Action.SUCCEED)
        return Decision(Action.FAIL, lost, "the attempt exited without reporting a result")
    if ray_status == "FAILED":
        if a.failure_class is not None:
            return Decision(Action.FAIL, a.failure_class, a.failure_message or "the attempt failed")
        return Decision(Action.FAIL, lost, "lost: the worker process died", ask_ray_why=True)
    if ray_status == "STOPPED":
        return Decision(Action.FAIL, lost, "the Ray execution was stopped outside the service")
    return Decision(Action.FAIL, lost, "Ray has no record of the attempt (head restarted?)")
