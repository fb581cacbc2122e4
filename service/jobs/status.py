"""Job states and the literal table of legal transitions. Terminal states are never left.

The one home of the state sets: every other module (API, client, control plane) imports them."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    CLAIMED = "CLAIMED"  # a dispatcher took it; the Ray submission is being made
    SUBMITTED = "SUBMITTED"  # Ray accepted the submission id
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


S = JobStatus
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT})
ACTIVE = frozenset({S.CLAIMED, S.SUBMITTED, S.RUNNING, S.CANCELLING})  # an attempt exists and may hold resources

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.CLAIMED, S.CANCELLED}),
    S.CLAIMED: frozenset({S.SUBMITTED, S.QUEUED, S.CANCELLING, S.CANCELLED, S.FAILED}),
    S.SUBMITTED: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.QUEUED, S.CANCELLING, S.TIMED_OUT}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.QUEUED, S.CANCELLING, S.TIMED_OUT}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMED_OUT: frozenset(),
}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every state from which `target` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def is_terminal(status: str) -> bool:
    return JobStatus(status) in TERMINAL
