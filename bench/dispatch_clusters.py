"""The clusters bench_service.py times a dispatcher cycle against (no Ray: what a cycle costs the
control plane itself), and a dispatcher that claims without submitting."""

from __future__ import annotations

from control.dispatcher import Dispatcher


class NoCapacity:
    """A busy cluster: every job could run on it, none fits now. The cycle orders the whole queue
    (fair share, priorities, aging, limits) and claims nothing."""

    def nodes(self) -> list[tuple[dict[str, float], dict[str, float]]]:
        return [({"CPU": 0.0, "GPU": 0.0}, {"CPU": 64.0, "GPU": 8.0}) for _ in range(4)]

    def total(self) -> dict[str, float]:
        return {"CPU": 256.0, "GPU": 32.0}

    def available(self) -> dict[str, float]:
        return {"CPU": 0.0, "GPU": 0.0}


class OneFreedEachCycle(NoCapacity):
    """A full cluster where one job's CPU frees up before each cycle: every cycle plans the whole
    queue and claims one job (the claimed ones stay unsubmitted, so they keep holding their CPU)."""

    def __init__(self) -> None:
        self.freed = 0.0

    def nodes(self) -> list[tuple[dict[str, float], dict[str, float]]]:
        self.freed += 1.0
        return [({"CPU": self.freed, "GPU": 0.0}, {"CPU": 64.0, "GPU": 8.0}), *super().nodes()[1:]]


class ClaimOnly(Dispatcher):
    """Claims as the dispatcher does and stops there: the Ray submission is timed by submit → RUNNING."""

    def submit(self, job_id: str) -> None:
        pass
