"""Fair share: each user's recent use of a queue, in GPU-second equivalents that halve every
`half_life_s`. Running jobs add what they have used so far; ended attempts are charged once."""

from __future__ import annotations

from datetime import datetime

from service.scheduling.model import Policy, Request


def decayed(value: float, since: datetime, now: datetime, half_life_s: float) -> float:
    elapsed = max((now - since).total_seconds(), 0.0)
    return value * 0.5 ** (elapsed / half_life_s) if half_life_s > 0 else 0.0


def rate(request: Request, policy: Policy) -> float:
    """GPU-second equivalents per second of running."""
    return request.total("GPU") + policy.cpu_weight * request.total("CPU")
