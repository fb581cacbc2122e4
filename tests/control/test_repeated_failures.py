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
    for second in range(0, 60, 2):  # a minute of 2 s cycles, the message naming the moment
        _fail(failures, ConnectionError(f"the GCS is away ({second} s)"))
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


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def test_an_exception_that_cannot_be_printed_does_not_escape(caplog):
    now = [0.0]
    failures = RepeatedFailures(logging.getLogger("loop"), "loop.failed", every_s=1, clock=lambda: now[0])
    for _ in range(3):
        _fail(failures, _Unprintable())
        now[0] += 2
    assert failures.total == 3
    assert "_Unprintable" in caplog.records[-1].getMessage()


def test_a_new_kind_of_failure_reports_how_often_the_last_one_repeated(caplog):
    failures = RepeatedFailures(logging.getLogger("loop"), "loop.failed", every_s=60, clock=lambda: 0.0)
    for _ in range(3):
        _fail(failures, ConnectionError("away"))
    _fail(failures, ValueError("other"))
    assert "2 more times before this" in caplog.records[1].getMessage()
