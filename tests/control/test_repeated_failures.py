"""A loop that fails the same way every few seconds logs one traceback, then a line a minute, then
its recovery; a new kind of failure gets its traceback."""

from __future__ import annotations

import logging

from control.repeated_failures import RepeatedFailures


def _fail(failures: RepeatedFailures, error: Exception) -> None:
    try:
        raise error
    except Exception as caught:
        failures.failed(caught)


def test_the_same_failure_is_logged_once_then_once_a_minute_then_its_recovery(caplog):
    now = [0.0]
    failures = RepeatedFailures(logging.getLogger("loop"), "loop.failed", every_s=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="loop")
    for _ in range(30):  # a minute of 2 s cycles
        _fail(failures, ConnectionError("the GCS is away"))
        now[0] += 2
    _fail(failures, ConnectionError("the GCS is away"))
    failures.succeeded()
    failures.succeeded()
    _fail(failures, ValueError("another problem"))
    messages = [(record.getMessage(), record.exc_info is not None) for record in caplog.records]
    assert messages == [
        ("loop.failed", True),
        ("loop.failed again, 30 times since the last report: ConnectionError: the GCS is away", False),
        ("loop.failed: recovered after 31 failures in a row", False),
        ("loop.failed", True),
    ]
    assert failures.total == 32
