"""The planner's inputs: what waits, what runs, the cluster's nodes, the queues' limits and each
user's recent usage. Resource keys are Ray's: GPU, CPU, memory (bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

Amounts = dict[str, float]


class Reason(StrEnum):
    """Why a waiting job is not starting now."""

    PRIORITY = "PRIORITY"  # jobs ahead of it in the order take or await the capacity it needs
    RESOURCES = "RESOURCES"  # it is next in line; no node has the free capacity yet
    USER_LIMIT = "USER_LIMIT"  # its owner already runs as much as the queue allows one user
    QUEUE_LIMIT = "QUEUE_LIMIT"  # its queue already runs as much as the queue allows
    DEPENDENCY = "DEPENDENCY"  # a job it depends on has not finished
    HELD = "HELD"  # held by its owner or an admin
    INFEASIBLE = "INFEASIBLE"  # no node (or queue limit) can ever hold it as the cluster is now
    STARTING = "STARTING"  # claimed by this cycle


@dataclass(frozen=True, slots=True)
class Request:
    """What one job asks for: `per_worker` on each of `workers` workers (a gang: all or none)."""

    per_worker: Amounts
    workers: int = 1

    @classmethod
    def of(cls, resources: dict[str, Any]) -> Request:
        per_worker = {
            "GPU": float(resources.get("gpus") or 0.0),
            "CPU": float(resources.get("cpus") or 0.0),
            "memory": float(resources.get("memory_gb") or 0.0) * 2**30,
        }
        return cls({key: value for key, value in per_worker.items() if value}, int(resources.get("workers") or 1))

    def total(self, key: str) -> float:
        return self.per_worker.get(key, 0.0) * self.workers


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    id: str
    owner: str
    queue: str
    priority: int
    created_at: datetime
    request: Request
    held: bool = False
    blocked_by: str | None = None  # a dependency not yet satisfied (the parent's id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Running:
    id: str
    owner: str
    queue: str
    request: Request
    started_at: datetime | None
    eta_s: float | None  # the worker's estimate of the time left; None when it has none


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    name: str
    max_gpus: float | None = None  # running GPUs of the whole queue
    max_cpus: float | None = None
    user_max_gpus: float | None = None  # running GPUs of one user in the queue
    user_max_cpus: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    half_life_s: float = 24 * 3600.0  # past usage counts half as much after this long
    cpu_weight: float = 1 / 16  # a CPU-second counts as this many GPU-seconds in fair share
    claim_horizon_s: float = 60.0  # a job claimed in this cycle counts as this long in use, for the next pick
    aging_s: float = 3600.0  # a waiting job gains one priority point per this long ...
    aging_max: int = 10  # ... up to this many
    reserve_after_s: float = 3600.0  # a job waiting this long holds back capacity from those behind it


@dataclass(frozen=True, slots=True)
class Explanation:
    position: int | None  # 1-based among the jobs that can start (held/dependent/infeasible: None)
    reason: Reason
    estimated_start: datetime | None  # None when it cannot be estimated (never a made-up number)


@dataclass
class Plan:
    claims: list[str] = field(default_factory=list)  # to start now, in order
    explanations: dict[str, Explanation] = field(default_factory=dict)
