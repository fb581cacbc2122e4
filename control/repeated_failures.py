"""How a loop that runs every few seconds reports failures: while the Ray head is away, for instance,
every dispatcher cycle fails the same way, and a traceback per poll interval buried everything else."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable


class RepeatedFailures:
    """The first failure of a kind is logged with its traceback; the same failure again only once
    every `every_s` (how many since, and the message); the first success after failures says so."""

    def __init__(
        self, logger: logging.Logger, event: str, *, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.event = event
        self.every_s = every_s
        self.clock = clock
        self.total = 0  # failures ever (a counter for /metrics)
        self._kind: str | None = None  # the failure being repeated
        self._streak = 0
        self._unreported = 0
        self._reported_at = 0.0

    def failed(self, error: BaseException) -> None:
        """Call from the `except` block: the traceback logged is the current exception's."""
        self.total += 1
        self._streak += 1
        kind, now = _kind(error), self.clock()
        if kind != self._kind:
            if self._unreported:
                self.logger.error("%s %d more times before this: %s", self.event, self._unreported, self._kind)
            self._kind, self._unreported, self._reported_at = kind, 0, now
            self.logger.exception(self.event)
            return
        self._unreported += 1
        if now - self._reported_at >= self.every_s:
            self.logger.error(
                "%s again, %d times since the last report: %s", self.event, self._unreported, _message(error)
            )
            self._unreported, self._reported_at = 0, now

    def succeeded(self) -> None:
        if self._streak:
            self.logger.warning("%s: recovered after %d failures in a row", self.event, self._streak)
        self._kind, self._streak, self._unreported = None, 0, 0


def _kind(error: BaseException) -> str:
    """The exception's type and where it was raised: its message may carry a time or a parameter
    that changes every time (a timeout's duration, a statement's values)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__qualname__}{where}"


def _message(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"[:500]
    except Exception:  # an exception whose __str__ fails must not kill the loop reporting it
        return type(error).__name__
