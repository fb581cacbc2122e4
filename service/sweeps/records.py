"""Sweep rows and the queries about them and their trial jobs. Never commits: the caller owns the
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from service.db.models import Job, Sweep
from service.jobs.errors import NotFound
from service.jobs.status import ACTIVE, JobStatus
from service.jobs.store import decode_cursor, encode_cursor, now


class SweepStatus(StrEnum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"  # no new trials; ends once its active trials have ended
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ENDED = frozenset({SweepStatus.SUCCEEDED, SweepStatus.FAILED, SweepStatus.CANCELLED})
PRUNED = "PRUNED"  # the error class of a trial early stopping cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSweep:
    id: str
    name: str
    owner: str
    request: dict[str, Any]
    base_spec: dict[str, Any]
    study_name: str
    max_trials: int
    max_concurrency: int
    max_failed_trials: int


def add(session: Session, new: NewSweep) -> Sweep:
    sweep = Sweep(
        id=new.id,
        name=new.name,
        owner=new.owner,
        status=SweepStatus.RUNNING.value,
        request=new.request,
        base_spec=new.base_spec,
        study_name=new.study_name,
        max_trials=new.max_trials,
        max_concurrency=new.max_concurrency,
        max_failed_trials=new.max_failed_trials,
        stop_running=False,
        summarized=False,
        created_at=now(),
    )
    session.add(sweep)
    return sweep


def get(session: Session, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id}")
    return sweep


def active(session: Session) -> list[Sweep]:
    """Sweeps the controller still has work on: running, stopping, or ended without their summary."""
    running = Sweep.status.in_([SweepStatus.RUNNING.value, SweepStatus.STOPPING.value])
    return list(session.execute(select(Sweep).where(or_(running, Sweep.summarized.is_(False)))).scalars())


def running_count(session: Session, owner: str) -> int:
    """The owner's sweeps that may still create trials."""
    running = Sweep.status == SweepStatus.RUNNING.value
    return int(session.execute(select(func.count()).where(Sweep.owner == owner, running)).scalar_one())


def trials(session: Session, sweep_id: str) -> list[Job]:
    return list(session.execute(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)).scalars())


def trial_state(status: str, error_class: str | None) -> str:
    """A trial's state as a sweep shows it: its job's, or PRUNED for a job early stopping cancelled."""
    return PRUNED if status == JobStatus.CANCELLED and error_class == PRUNED else status


def counts(session: Session, sweep_id: str) -> dict[str, int]:
    """Trials by state (trial_state's, in SQL)."""
    pruned = (Job.status == JobStatus.CANCELLED.value) & (Job.error_class == PRUNED)
    state = case((pruned, PRUNED), else_=Job.status)
    rows = session.execute(select(state, func.count()).where(Job.sweep_id == sweep_id).group_by(state)).tuples()
    return {status: int(count) for status, count in rows}


def gpu_seconds(session: Session, sweep_id: str) -> float:
    total = session.execute(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0)).where(Job.sweep_id == sweep_id))
    return float(total.scalar_one())


def active_trials(session: Session, sweep_id: str) -> int:
    statuses = [JobStatus.QUEUED.value, *(s.value for s in ACTIVE)]
    query = select(func.count()).select_from(Job).where(Job.sweep_id == sweep_id, Job.status.in_(statuses))
    return int(session.execute(query).scalar_one())


def listed(
    session: Session,
    *,
    statuses: list[str] | None,
    owner: str | None,
    id_prefix: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Sweep], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Sweep)
    if statuses:
        query = query.where(Sweep.status.in_(statuses))
    if owner is not None:
        query = query.where(Sweep.owner == owner)
    if id_prefix is not None:
        query = query.where(Sweep.id.startswith(id_prefix, autoescape=True))
    if cursor is not None:
        created, sweep_id = decode_cursor(cursor)
        query = query.where(or_(Sweep.created_at < created, and_(Sweep.created_at == created, Sweep.id < sweep_id)))
    page = list(session.execute(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit + 1)).scalars())
    more = len(page) > limit
    page = page[:limit]
    return page, (encode_cursor(page[-1].created_at, page[-1].id) if more and page else None)
