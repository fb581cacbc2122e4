"""The plan of one dispatch cycle.

Order. Eligible jobs (not held, dependencies met, able to fit the cluster at all) are ordered by
effective priority (priority plus one point per `aging_s` waited, at most `aging_max`), then by
their owner's share of the queue (recent usage, fair share), then by age. Shares move as jobs are
picked, so free capacity is dealt out between users in turn instead of to whoever queued most.

Admission. Walking that order, a job starts now when its queue's and its owner's limits allow and
its gang fits the nodes' free capacity. A job that does not fit does not block the jobs behind it
(a small job runs while a large one waits), except that a job waiting longer than
`reserve_after_s` holds its request back from the jobs behind it, so large jobs cannot starve.

Estimates. A waiting job's start is estimated from the running jobs' own ETAs: the earliest time
their releases cover its request after the jobs ahead of it have taken theirs. Jobs ahead that
have no end time make every estimate behind them unknown: None, never a made-up number."""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.scheduling.fairshare import decayed, rate
from service.scheduling.model import (
    Amounts,
    Explanation,
    Plan,
    Policy,
    QueueLimits,
    Reason,
    Request,
    Running,
    Waiting,
)
from service.scheduling.placement import ever_fits, place

KEYS = ("GPU", "CPU", "memory")
# a start further off says nothing, and it comes from a worker's ETA, which nothing bounds (one past
# year 9999 overflowed the date, and every listing that plans the queue failed with it)
HORIZON_S = 366 * 24 * 3600.0
Share = tuple[str, str]  # (queue, owner)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    free: list[Amounts]  # per node, what is free now
    total: list[Amounts]  # per node, its whole capacity


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    value: float  # GPU-second equivalents, as of `at`
    at: datetime


def plan(
    waiting: list[Waiting],
    running: list[Running],
    cluster: Capacity,
    *,
    queues: dict[str, QueueLimits],
    usage: dict[Share, Usage],
    now: datetime,
    policy: Policy,
    explain: bool = True,
) -> Plan:
    """The claims, and with `explain` every waiting job's position, reason and estimated start.
    Without it (the dispatcher's case) the plan stops at the first job after which no claim is
    possible, so a long queue is ordered only as far as the free capacity reaches."""
    result = Plan()
    queues = {name: limits for name, limits in queues.items() if _limited(limits)}  # the others need no checks
    eligible = _set_aside(waiting, cluster, queues, result)
    order = _fair_order(eligible, running, usage, now, policy)
    shapes = None if explain else len({id(job.request) for job in eligible})
    _admit(order, running, cluster, queues, now, policy, result, stop_after_shapes=shapes)
    return result


def _limited(limits: QueueLimits) -> bool:
    caps = (limits.max_gpus, limits.max_cpus, limits.user_max_gpus, limits.user_max_cpus)
    return any(cap is not None for cap in caps)


def _set_aside(
    waiting: list[Waiting], cluster: Capacity, queues: dict[str, QueueLimits], result: Plan
) -> list[Waiting]:
    eligible = []
    fits: dict[int, bool] = {}  # by request identity: jobs of one shape share their Request
    for job in waiting:
        reason = None
        if job.held:
            reason = Reason.HELD
        elif job.blocked_by is not None:
            reason = Reason.DEPENDENCY
        elif not _ever_fits(job.request, cluster.total, fits) or _over_limit(job, queues, {}, {}):
            reason = Reason.INFEASIBLE
        if reason is None:
            eligible.append(job)
        else:
            result.explanations[job.id] = Explanation(None, reason, None)
    return eligible


def _ever_fits(request: Request, totals: list[Amounts], known: dict[int, bool]) -> bool:
    fits = known.get(id(request))
    if fits is None:
        fits = known[id(request)] = ever_fits(request, totals)
    return fits


def _effective_priority(job: Waiting, now: datetime, policy: Policy) -> int:
    waited = max((now - job.created_at).total_seconds(), 0.0)
    return job.priority + min(policy.aging_max, int(waited // policy.aging_s)) if policy.aging_s > 0 else job.priority


def _fair_order(
    eligible: list[Waiting], running: list[Running], usage: dict[Share, Usage], now: datetime, policy: Policy
) -> Iterator[Waiting]:
    """Deal jobs out by (effective priority, owner's share, age), re-sorting after every pick; lazily,
    so that a caller who stops early does not pay for the rest of the order."""
    shares: dict[Share, float] = defaultdict(float)
    for key, used in usage.items():
        shares[key] += decayed(used.value, used.at, now, policy.half_life_s)
    for active in running:
        elapsed = (now - active.started_at).total_seconds() if active.started_at else 0.0
        shares[(active.queue, active.owner)] += rate(active.request, policy) * max(elapsed, 0.0)
    # each user's own jobs, best first, with their effective priority (computed once per job)
    lines: dict[Share, list[tuple[int, Waiting]]] = defaultdict(list)
    ranked = sorted((-_effective_priority(job, now, policy), job.created_at, job.id, job) for job in eligible)
    for rank, _, _, job in ranked:  # ids are unique: the jobs themselves are never compared
        lines[(job.queue, job.owner)].append((rank, job))
    heads: list[tuple[int, float, datetime, str, Share]] = []
    cursor = dict.fromkeys(lines, 0)

    def push(key: Share) -> None:
        rank, job = lines[key][cursor[key]]
        share = round(shares[key], 3)  # below a thousandth of a GPU-second, usage is forgotten: age decides
        heapq.heappush(heads, (rank, share, job.created_at, job.id, key))

    for key in lines:
        push(key)
    claimed: dict[int, float] = {}  # by request identity: what a pick adds to its owner's share
    while heads:
        key = heapq.heappop(heads)[-1]
        line, at = lines[key], cursor[key]
        job = line[at][1]
        yield job
        added = claimed.get(id(job.request))
        if added is None:
            added = claimed[id(job.request)] = rate(job.request, policy) * policy.claim_horizon_s
        shares[key] += added
        cursor[key] = at + 1
        if at + 1 < len(line):
            push(key)


@dataclass
class _Held:
    """Running (and just claimed) use per queue and per (queue, owner)."""

    queue: dict[str, Amounts] = field(default_factory=lambda: defaultdict(dict))
    user: dict[Share, Amounts] = field(default_factory=lambda: defaultdict(dict))

    def add(self, queue: str, owner: str, request: Request) -> None:
        for bucket in (self.queue[queue], self.user[(queue, owner)]):
            for key in KEYS:
                bucket[key] = bucket.get(key, 0.0) + request.total(key)


def _over_limit(
    job: Waiting, queues: dict[str, QueueLimits], queue_use: dict[str, Amounts], user_use: dict[Share, Amounts]
) -> Reason | None:
    limits = queues.get(job.queue)
    if limits is None:
        return None
    checks = (  # the owner's own limit first: it is the more specific reason
        (Reason.USER_LIMIT, user_use.get((job.queue, job.owner), {}), limits.user_max_gpus, limits.user_max_cpus),
        (Reason.QUEUE_LIMIT, queue_use.get(job.queue, {}), limits.max_gpus, limits.max_cpus),
    )
    for reason, used, max_gpus, max_cpus in checks:
        for key, cap in (("GPU", max_gpus), ("CPU", max_cpus)):
            if cap is not None and used.get(key, 0.0) + job.request.total(key) > cap + 1e-9:
                return reason
    return None


def _admit(
    order: Iterator[Waiting],
    running: list[Running],
    cluster: Capacity,
    queues: dict[str, QueueLimits],
    now: datetime,
    policy: Policy,
    result: Plan,
    *,
    stop_after_shapes: int | None,
) -> None:
    """`stop_after_shapes`: the number of distinct requests in `order`, to stop once each of them is
    refused (none can start until a claim frees capacity, and no claim is left); None walks it all."""
    held = _Held()
    for active in running:
        held.add(active.queue, active.owner, active.request)
    free = [dict(node) for node in cluster.free]
    reserved: Amounts = {}  # requests of long-waiting jobs, held back from the jobs behind them
    timeline = _Timeline(running, free, now)
    blocked = False  # some job ahead is waiting for capacity
    # Requests (by identity) that could not start on `free` as it is: whether they would have
    # been placed. Until a claim changes `free` they cannot start either (reservations only grow),
    # so a long queue of a few request shapes is not placed job by job.
    refused: dict[int, bool] = {}
    for position, job in enumerate(order, start=1):
        limit = _over_limit(job, queues, held.queue, held.user)
        placed: list[Amounts] | None = None
        if limit is None and id(job.request) in refused:
            fitted = refused[id(job.request)]
        elif limit is None:
            placed = place(job.request, free)
            fitted = placed is not None
        else:
            fitted = False
        if placed is not None and _within(placed, reserved):
            refused.clear()
            free = placed
            held.add(job.queue, job.owner, job.request)
            result.claims.append(job.id)
            result.explanations[job.id] = Explanation(position, Reason.STARTING, now)
            timeline.take_now(job.request)
            continue
        if limit is None:
            refused[id(job.request)] = fitted
            if len(refused) == stop_after_shapes:
                return
        reason = limit or (Reason.PRIORITY if blocked or fitted else Reason.RESOURCES)
        # a limit frees up on its owner's (or queue's) schedule, which resources alone do not tell
        start = timeline.start_of(job.request) if limit is None else None
        result.explanations[job.id] = Explanation(position, reason, start)
        blocked = blocked or limit is None
        if (now - job.created_at).total_seconds() > policy.reserve_after_s and limit is None:
            for key in KEYS:
                reserved[key] = reserved.get(key, 0.0) + job.request.total(key)


def _within(free_after: list[Amounts], reserved: Amounts) -> bool:
    """Does enough stay free, summed over nodes, for the long-waiting jobs' reservations?"""
    return all(sum(node.get(key, 0.0) for node in free_after) + 1e-9 >= amount for key, amount in reserved.items())


class _Timeline:
    """Free capacity over time, summed over nodes: what is free now plus what each running job with
    an ETA releases when it ends, minus what the jobs planned so far take from their start on."""

    def __init__(self, running: list[Running], free: list[Amounts], now: datetime) -> None:
        self.now = now
        self.free_now = {key: sum(node.get(key, 0.0) for node in free) for key in KEYS}
        self.releases = sorted(((job.eta_s, job.request) for job in running if job.eta_s is not None), key=_first)
        self.taken: Amounts = {}
        self.known = True  # false once a planned job has no start: everything behind it is unknown

    def take_now(self, request: Request) -> None:
        for key in KEYS:
            self.free_now[key] -= request.total(key)

    def start_of(self, request: Request) -> datetime | None:
        if not self.known:
            return None
        available = {key: self.free_now[key] - self.taken.get(key, 0.0) for key in KEYS}
        start: float | None = 0.0 if _covers(available, request) else None
        for eta, released in self.releases:
            if start is not None:
                break
            for key in KEYS:
                available[key] += released.total(key)
            if _covers(available, request):
                start = max(eta, 0.0)
        for key in KEYS:  # it holds its request from its start on: unknown duration
            self.taken[key] = self.taken.get(key, 0.0) + request.total(key)
        if start is None or start > HORIZON_S:
            self.known = False
            return None
        return self.now + timedelta(seconds=math.ceil(start))


def _covers(available: Amounts, request: Request) -> bool:
    return all(available.get(key, 0.0) + 1e-9 >= request.total(key) for key in KEYS)


def _first(item: tuple[float, Request]) -> float:
    return item[0]
