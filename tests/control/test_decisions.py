"""The reconciler's decision table, row by row, without Ray: what happens to an active attempt for
each (job state, Ray status, lease, heartbeat, runtime, report) the control plane can see."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from control.decisions import Action, AttemptView, Timeouts, decide
from service.contracts import FailureClass
from service.jobs.status import JobStatus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TIMEOUTS = Timeouts(claim_lease_s=60, heartbeat_timeout_s=300)
RUNNING = AttemptView(
    job_status=JobStatus.RUNNING,
    claimed_at=NOW - timedelta(seconds=100),
    started_at=NOW - timedelta(seconds=90),
    last_heartbeat_at=NOW - timedelta(seconds=5),
    max_runtime_s=None,
    cancel_requested=False,
    has_result=False,
    failure_class=None,
    failure_message=None,
)
CLAIMED = replace(RUNNING, job_status=JobStatus.CLAIMED, started_at=None, last_heartbeat_at=None)
FRESH_CLAIM = replace(CLAIMED, claimed_at=NOW - timedelta(seconds=10))


def seconds_ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("view", "ray", "action", "failure"),
    [
        # claims: adopted once Ray has them, left alone within the lease, expired or cancelled after it
        (CLAIMED, "PENDING", Action.ADOPT, None),
        (CLAIMED, "SUCCEEDED", Action.ADOPT, None),
        (FRESH_CLAIM, None, Action.WAIT, None),
        (CLAIMED, None, Action.EXPIRE_CLAIM, None),
        (replace(CLAIMED, cancel_requested=True), None, Action.CANCEL_UNSUBMITTED, None),
        # cancelling: stop what runs, finish once it ended
        (replace(RUNNING, job_status=JobStatus.CANCELLING), "RUNNING", Action.STOP, None),
        (replace(RUNNING, job_status=JobStatus.CANCELLING), "PENDING", Action.STOP, None),
        (replace(RUNNING, job_status=JobStatus.CANCELLING), "STOPPED", Action.CANCELLED, None),
        (replace(RUNNING, job_status=JobStatus.CANCELLING), None, Action.CANCELLED, None),
        # running
        (replace(RUNNING, job_status=JobStatus.SUBMITTED), "RUNNING", Action.MARK_RUNNING, None),
        (replace(RUNNING, job_status=JobStatus.SUBMITTED), "PENDING", Action.WAIT, None),
        (RUNNING, "RUNNING", Action.WAIT, None),
        (replace(RUNNING, max_runtime_s=60), "RUNNING", Action.TIME_OUT, FailureClass.TIMEOUT),
        (replace(RUNNING, max_runtime_s=600), "RUNNING", Action.WAIT, None),
        (replace(RUNNING, last_heartbeat_at=seconds_ago(301)), "RUNNING", Action.FAIL, FailureClass.INFRA_LOST),
        (replace(RUNNING, last_heartbeat_at=seconds_ago(301)), "PENDING", Action.WAIT, None),  # not started yet
        # ended
        (replace(RUNNING, has_result=True), "SUCCEEDED", Action.SUCCEED, None),
        (RUNNING, "SUCCEEDED", Action.FAIL, FailureClass.INFRA_LOST),
        (replace(RUNNING, failure_class=FailureClass.OOM), "FAILED", Action.FAIL, FailureClass.OOM),
        (replace(RUNNING, failure_class=FailureClass.USER_ERROR), "FAILED", Action.FAIL, FailureClass.USER_ERROR),
        (RUNNING, "FAILED", Action.FAIL, FailureClass.INFRA_LOST),
        (RUNNING, "STOPPED", Action.FAIL, FailureClass.INFRA_LOST),
        (RUNNING, None, Action.FAIL, FailureClass.INFRA_LOST),
    ],
)
def test_decision_table(view, ray, action, failure):
    decision = decide(view, ray, now=NOW, timeouts=TIMEOUTS)
    assert decision.action == action
    assert decision.failure == failure


def test_hung_and_timed_out_attempts_are_stopped_in_ray_first():
    hung = decide(replace(RUNNING, last_heartbeat_at=seconds_ago(400)), "RUNNING", now=NOW, timeouts=TIMEOUTS)
    timed_out = decide(replace(RUNNING, max_runtime_s=10), "RUNNING", now=NOW, timeouts=TIMEOUTS)
    assert hung.stop_ray
    assert "hung" in hung.message
    assert timed_out.stop_ray
    assert "max_runtime_s 10 exceeded" in timed_out.message
    assert not decide(RUNNING, "FAILED", now=NOW, timeouts=TIMEOUTS).stop_ray


def test_a_worker_that_died_without_a_report_asks_ray_why():
    assert decide(RUNNING, "FAILED", now=NOW, timeouts=TIMEOUTS).ask_ray_why
    reported = replace(RUNNING, failure_class=FailureClass.USER_ERROR, failure_message="ValueError: bad")
    decision = decide(reported, "FAILED", now=NOW, timeouts=TIMEOUTS)
    assert (decision.ask_ray_why, decision.message) == (False, "ValueError: bad")


def test_an_expired_claim_quotes_the_submission_error():
    refused = replace(CLAIMED, failure_message="ConnectionError: refused")
    assert decide(refused, None, now=NOW, timeouts=TIMEOUTS).message == "ConnectionError: refused"


def test_runtime_counts_from_the_start_or_else_the_claim():
    never_started = replace(RUNNING, started_at=None, max_runtime_s=99)  # claimed 100 s ago
    assert decide(never_started, "RUNNING", now=NOW, timeouts=TIMEOUTS).action == Action.TIME_OUT
