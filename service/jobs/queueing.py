"""The planner's inputs from the database, in a fixed number of queries whatever the queue's length:
waiting jobs (with their unmet dependencies), running jobs, queue limits, fair-share usage and the
last cluster snapshot. Also the writes that keep them: usage charged when an attempt ends, the
snapshot, holds, dependencies and queue definitions. Never commits: the caller owns the transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, event, func, select
from sqlalchemy.orm import Session, aliased

from ascl.registry import unknown_name_message
from service.db.group_commit import BATCH_HINTS, batch_read
from service.db.models import ClusterState, Job, JobDependency, JobEvent, Queue, Usage
from service.jobs.errors import InvalidSpec, InvalidTransition
from service.jobs.status import ACTIVE, JobStatus, is_terminal
from service.jobs.store import as_utc, get_job, now
from service.scheduling.fairshare import decayed, rate
from service.scheduling.model import Policy, QueueLimits, Request, Running, Waiting
from service.scheduling.planner import Capacity
from service.scheduling.planner import Usage as ShareUsage

SNAPSHOT_ID = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    waiting: list[Waiting]
    running: list[Running]
    queues: dict[str, QueueLimits]
    usage: dict[tuple[str, str], ShareUsage]


def load(session: Session, running: list[Running] | None = None) -> QueueState:
    """`running`: the caller's `running_jobs` of this transaction, when it has read them already."""
    queued = (
        session.connection()
        .execute(
            select(
                Job.id, Job.owner, Job.queue, Job.priority, Job.created_at, cast(Job.resources, Text), Job.held_at
            ).where(Job.status == JobStatus.QUEUED.value)
        )
        .tuples()
        .all()  # one fetch: row by row costs more than the rest of the read
    )
    # Read after the jobs: a job and its dependencies commit together, so on PostgreSQL (each
    # statement sees what committed before it) every job read above has its dependencies read here.
    parent = aliased(Job)
    unmet = session.execute(  # dependencies of waiting jobs whose parent has not (satisfactorily) ended
        select(JobDependency.job_id, JobDependency.parent_id, JobDependency.condition, parent.status)
        .join(Job, Job.id == JobDependency.job_id)
        .join(parent, parent.id == JobDependency.parent_id)
        .where(Job.status == JobStatus.QUEUED.value)
    ).all()
    blocked: dict[str, str] = {}
    for job_id, parent_id, condition, parent_status in unmet:
        # eligible only once every dependency is met; one that can no longer be is cancelled by the
        # dispatcher, possibly a statement later than this one reads (READ COMMITTED)
        met = parent_status == JobStatus.SUCCEEDED or (condition == "any" and is_terminal(parent_status))
        if not met:
            blocked.setdefault(job_id, parent_id)
    requests = _Requests()
    waiting = [
        Waiting(
            id=job_id,
            owner=owner,
            queue=queue,
            priority=priority,
            created_at=as_utc(created_at),
            request=requests.of(resources),
            held=held_at is not None,
            blocked_by=blocked.get(job_id),
        )
        for job_id, owner, queue, priority, created_at, resources, held_at in queued
    ]
    if running is None:
        running = running_jobs(session)
    queues = {
        row.name: QueueLimits(
            name=row.name,
            max_gpus=row.max_gpus,
            max_cpus=row.max_cpus,
            user_max_gpus=row.user_max_gpus,
            user_max_cpus=row.user_max_cpus,
        )
        for row in session.execute(select(Queue)).scalars()
    }
    usage = {
        (row.queue, row.owner): ShareUsage(value=row.value, at=as_utc(row.at))
        for row in session.execute(select(Usage)).scalars()
    }
    return QueueState(waiting=waiting, running=running, queues=queues, usage=usage)


def running_jobs(session: Session) -> list[Running]:
    """The jobs holding (or about to hold) cluster resources: claimed, submitted or running."""
    return [
        Running(
            id=job_id,
            owner=owner,
            queue=queue,
            request=Request.of(resources),
            started_at=as_utc(started_at),
            eta_s=_eta(progress),
        )
        for job_id, owner, queue, resources, started_at, progress in session.execute(
            select(Job.id, Job.owner, Job.queue, Job.resources, Job.started_at, Job.progress).where(
                Job.status.in_([s.value for s in ACTIVE])
            )
        ).tuples()
    ]


def waiting_requests(session: Session) -> list[Request]:
    """The distinct resource requests of the queued jobs that are not held: a long queue holds a few."""
    shapes = session.execute(
        select(cast(Job.resources, Text)).where(Job.status == JobStatus.QUEUED.value, Job.held_at.is_(None)).distinct()
    ).scalars()
    requests = _Requests()
    return [requests.of(text) for text in shapes]


class _Requests:
    """One `Request` per distinct resources text: a long queue holds a few shapes of request, so
    each is parsed once (and the planner's per-request work can be shared by identity)."""

    def __init__(self) -> None:
        self._known: dict[str, Request] = {}

    def of(self, text: str) -> Request:
        request = self._known.get(text)
        if request is None:
            request = self._known[text] = Request.of(json.loads(text))
        return request


def _eta(progress: dict[str, Any] | None) -> float | None:
    eta = (progress or {}).get("eta_s")
    return float(eta) if isinstance(eta, int | float) else None


def failed_dependencies(session: Session) -> list[tuple[str, str, str]]:
    """(waiting job, its parent, the parent's state) for each dependency that can no longer be met."""
    parent = aliased(Job)
    rows = session.execute(
        select(JobDependency.job_id, JobDependency.parent_id, parent.status)
        .join(Job, Job.id == JobDependency.job_id)
        .join(parent, parent.id == JobDependency.parent_id)
        .where(
            Job.status == JobStatus.QUEUED.value,
            JobDependency.condition == "success",
            parent.status.in_([JobStatus.FAILED.value, JobStatus.CANCELLED.value, JobStatus.TIMED_OUT.value]),
        )
    ).all()
    return [(job_id, parent_id, status) for job_id, parent_id, status in rows]


def charge(
    session: Session, *, queue: str, owner: str, resources: dict[str, Any], seconds: float, policy: Policy
) -> None:
    """Add an ended attempt's use to its owner's fair-share usage of the queue."""
    amount = rate(Request.of(resources), policy) * max(seconds, 0.0)
    if amount <= 0:
        return
    moment = now()
    row = session.get(Usage, (queue, owner))
    if row is None:
        session.add(Usage(queue=queue, owner=owner, value=amount, at=moment))
    else:
        row.value = decayed(row.value, as_utc(row.at), moment, policy.half_life_s) + amount
        row.at = moment


def save_snapshot(session: Session, cluster: Capacity) -> None:
    nodes = [{"free": free, "total": total} for free, total in zip(cluster.free, cluster.total, strict=True)]
    row = session.get(ClusterState, SNAPSHOT_ID)
    if row is None:
        session.add(ClusterState(id=SNAPSHOT_ID, nodes=nodes, updated_at=now()))
    elif row.nodes != nodes:
        row.nodes, row.updated_at = nodes, now()


def snapshot(session: Session) -> tuple[Capacity, datetime] | None:
    row = session.get(ClusterState, SNAPSHOT_ID)
    if row is None:
        return None
    cluster = Capacity(free=[node["free"] for node in row.nodes], total=[node["total"] for node in row.nodes])
    return cluster, as_utc(row.updated_at)


def hold(session: Session, job_id: str, *, actor: str, held: bool) -> Job:
    """Hold a queued job (it keeps its place, but is not started) or release it; an event records it."""
    job = get_job(session, job_id)
    if job.status != JobStatus.QUEUED:
        raise InvalidTransition(f"job {job_id} is {job.status}; only queued jobs are held or released")
    if (job.held_at is not None) == held:
        return job
    job.held_at, job.held_by = (now(), actor) if held else (None, None)
    reason = "held" if held else "released"
    session.add(
        JobEvent(
            job_id=job_id, from_status=job.status, to_status=job.status, actor=actor, reason=reason, created_at=now()
        )
    )
    return job


def add_dependencies(session: Session, job_id: str, parents: list[tuple[str, str]]) -> None:
    for parent_id, condition in parents:
        session.add(JobDependency(job_id=job_id, parent_id=parent_id, condition=condition))


def require_queue(session: Session, name: str) -> Queue:
    """The queue row, read once for a group commit's whole batch (its units hinted with their queues)."""
    row = batch_read(session, _QUEUES, name, hint="queue", read=lambda names: _queues(session, names))
    if row is None:
        known = list(session.execute(select(Queue.name).order_by(Queue.name)).scalars())
        raise InvalidSpec("queue", unknown_name_message("queue", name, known))
    return row


def _queues(session: Session, names: list[str]) -> dict[str, Queue]:
    return {row.name: row for row in session.execute(_QUEUES_NAMED, {"names": names}).scalars()}


# built once, like the batch's other reads: constructing a statement cost more CPU than running it
_QUEUES_NAMED = select(Queue).where(Queue.name.in_(bindparam("names", expanding=True)))


_QUEUES = "queueing.queues"


def parents_of(session: Session, job_ids: list[str]) -> dict[str, list[str]]:
    """The jobs each of `job_ids` depends on, in one query."""
    parents: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    rows = session.execute(
        select(JobDependency.job_id, JobDependency.parent_id).where(JobDependency.job_id.in_(job_ids))
    ).tuples()
    for job_id, parent_id in rows:
        parents[job_id].append(parent_id)
    return parents


def queued_count(session: Session, owner: str) -> int:
    """The owner's queued jobs, those added in this transaction and not yet flushed included. In a
    group commit whose units are hinted with their owners, one COUNT ... GROUP BY reads every
    owner's count for the whole batch; its new rows are in `session.new` until a flush, after
    which it reads again."""
    pending = sum(1 for row in session.new if isinstance(row, Job) and row.owner == owner)
    counts: dict[str, int] = session.info.setdefault(_QUEUED_COUNTS, {})
    if owner not in counts:
        owners = {owner, *(hint["owner"] for hint in session.info.get(BATCH_HINTS, ()) if "owner" in hint)}
        rows = session.connection().execute(_COUNT_QUEUED, {"owners": sorted(owners)}).tuples()
        counts |= dict.fromkeys(owners, 0) | {name: int(count) for name, count in rows}
    return counts[owner] + pending


_QUEUED_COUNTS = "queueing.queued_counts"
_COUNT_QUEUED = (
    select(Job.owner, func.count())
    .where(Job.owner.in_(bindparam("owners", expanding=True)), Job.status == JobStatus.QUEUED.value)
    .group_by(Job.owner)
)


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_transaction_end")  # every end: commit, rollback, savepoint, close()
def _forget_counts(session: Session, *_: object) -> None:
    """Once for every session: flushed rows leave `session.new`, and another transaction may see
    other jobs, so the counts are read again."""
    session.info.pop(_QUEUED_COUNTS, None)


def resolve_eval_targets(session: Session) -> None:
    """Queued evals of a train job they depend on learn its model version once it has one (until
    then their dependency keeps them waiting). Call it after `load`, in the same transaction: on
    PostgreSQL each statement sees what committed before it, so every train job that `load` saw
    succeed is seen here with its version (committed with the success), and no eval the plan may
    claim is left without one. Parents are read by column, never from the session's stale rows."""
    pending = {
        job_id: target
        for job_id, target in session.execute(
            select(Job.id, Job.target).where(Job.status == JobStatus.QUEUED.value, Job.kind == "eval")
        ).tuples()
        if awaits_model(target)
    }
    if not pending:
        return
    parents = {
        parent_id: (status, version, run_id)
        for parent_id, status, version, run_id in session.execute(
            select(Job.id, Job.status, Job.registered_model_version, Job.mlflow_run_id).where(
                Job.id.in_(sorted({target["job_id"] for target in pending.values()}))
            )
        ).tuples()
    }
    for job_id, target in pending.items():
        status, version, run_id = parents.get(target["job_id"], (None, None, None))
        if status == JobStatus.SUCCEEDED and version:
            get_job(session, job_id).target = with_model(target, version, run_id)


def awaits_model(target: dict[str, Any] | None) -> bool:
    """An eval's target names a train job whose model version it does not know yet."""
    return bool(target and target.get("model_version") is None and target.get("job_id"))


def with_model(target: dict[str, Any], version: str, run_id: str | None) -> dict[str, Any]:
    """The target once its train job has registered `version` (from run `run_id`)."""
    return {**target, "model_version": version, "run_id": run_id}
