"""Every SQL statement about jobs. Functions take a Session and never commit: the caller owns
the transaction (one per API request, one per dispatcher step).

All state changes go through `transition`: a conditional UPDATE (status in the allowed sources)
plus a job_event row, in the caller's transaction. Zero rows updated means another actor won."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import CursorResult, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.group_commit import batch_added, batch_read
from service.db.models import JOB_NAME_LENGTH, Job, JobEvent
from service.jobs.errors import IdempotencyConflict, InvalidTransition, JobNotFound
from service.jobs.status import TERMINAL, JobStatus, sources_of


def now() -> datetime:
    return datetime.now(UTC)


def transition(
    session: Session,
    job_id: str,
    to: JobStatus,
    *,
    actor: str,
    reason: str,
    attempt_no: int | None = None,
    values: dict[str, Any] | None = None,
    allowed_from: frozenset[JobStatus] | None = None,
) -> JobStatus | None:
    """Move the job to `to` if its state allows; returns the previous state, or None if not moved."""
    sources = allowed_from if allowed_from is not None else sources_of(to)
    current = session.execute(select(Job.status).where(Job.id == job_id)).scalar_one_or_none()
    if current is None:
        raise JobNotFound(f"no job {job_id}")
    if current not in sources:
        return None
    changes: dict[str, Any] = {"status": to.value, "version": Job.version + 1, **(values or {})}
    if to in TERMINAL:
        changes.setdefault("finished_at", now())
    result = session.execute(update(Job).where(Job.id == job_id, Job.status == current).values(**changes))
    moved = result.rowcount if isinstance(result, CursorResult) else 0
    if not moved:
        return None
    session.add(
        JobEvent(
            job_id=job_id,
            attempt_no=attempt_no,
            from_status=current,
            to_status=to.value,
            actor=actor,
            reason=reason,
            created_at=now(),
        )
    )
    return JobStatus(current)


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def clipped(name: str, *, suffix: str = "") -> str:
    """A job name made of `name` and `suffix` that fits its column: `name` is cut, the suffix kept."""
    return name[: JOB_NAME_LENGTH - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    name: str
    owner: str
    queue: str
    priority: int
    tags: list[str]
    spec: dict[str, Any]
    target: dict[str, Any] | None
    resources: dict[str, Any]
    max_runtime_s: int | None
    max_infra_retries: int
    model_name: str | None
    experiment: str = "ascl"  # the MLflow experiment
    retried_from: str | None = None
    resume_checkpoint: str | None = None
    sweep_id: str | None = None  # a sweep's trial: its sweep and Optuna trial number
    trial_number: int | None = None
    held_by: str | None = None  # submitted held (by this user)
    auto_evaluate: bool = True  # train: its registered version gets the standard evaluation

    @classmethod
    def of(cls, job: Job) -> NewJob:
        """Every request field of a stored job (a retry starts from these)."""
        return cls(**{name: getattr(job, name) for name in cls.__dataclass_fields__})


def add_job(session: Session, new: NewJob, *, idempotency_key: str | None, body_hash: str) -> tuple[Job, bool]:
    """Insert a QUEUED job; with an idempotency key, return the existing job (created=False) for
    the same body, or raise IdempotencyConflict for a different one. Safe under concurrency: the
    unique (owner, key) constraint decides the race."""
    if idempotency_key is not None:
        existing = _by_key(session, new.owner, idempotency_key)
        if existing is not None:
            return _same_request(existing, body_hash), False
    job = Job(
        id=uuid.uuid4().hex,
        status=JobStatus.QUEUED.value,
        held_at=now() if new.held_by else None,
        idempotency_key=idempotency_key,
        request_hash=body_hash,
        created_at=now(),
        metrics_history=[],
        attempts_made=0,
        infra_failures=0,
        gpu_seconds=0.0,
        version=0,
        tag_index=tag_index(new.tags),
        **{name: getattr(new, name) for name in NewJob.__dataclass_fields__},  # shallow: asdict deep-copies the spec
    )
    if idempotency_key is None or not session.autoflush:
        # Flushed with the rest of the transaction (a group commit: many submissions, one INSERT).
        # A concurrent twin that commits the same (owner, key) first fails the transaction on the
        # unique constraint; the group commit runs this request again and the look-up finds the twin.
        session.add(job)
    else:
        try:
            with session.begin_nested():  # alone: a concurrent twin may win the unique (owner, key) insert
                session.add(job)
                session.flush()
        except IntegrityError:  # a twin committed since the look-up above: read it, not the cache
            existing = session.execute(
                select(Job).where(Job.owner == new.owner, Job.idempotency_key == idempotency_key)
            ).scalar_one_or_none()
            if existing is None:
                raise
            return _same_request(existing, body_hash), False
    if idempotency_key is not None:
        batch_added(session, _KEYED, owner_key(new.owner, idempotency_key), job)
    session.add(
        JobEvent(
            job_id=job.id,
            from_status=None,
            to_status=JobStatus.QUEUED.value,
            actor=new.owner,
            reason="submitted, held" if new.held_by else "submitted",
            created_at=job.created_at,
        )
    )
    return job, True


def tag_index(tags: list[str]) -> str:
    """',a,b,': a LIKE-searchable copy of the JSON tag list, the same SQL on SQLite and PostgreSQL."""
    return "," + ",".join(tags) + "," if tags else ""


def _by_key(session: Session, owner: str, key: str) -> Job | None:
    """The job submitted with this key, also one added earlier in this transaction (a twin in the
    same group commit, not yet flushed: `add_job` adds it to the batch's keys). In a group commit
    whose units are hinted with their `owner_key`, one query reads the whole batch's."""
    return batch_read(session, _KEYED, owner_key(owner, key), hint="owner_key", read=lambda keys: _keyed(session, keys))


def owner_key(owner: str, key: str) -> str:
    """An (owner, Idempotency-Key) pair as one batch hint."""
    return json.dumps([owner, key])


def _keyed(session: Session, pairs: list[str]) -> dict[str, Job]:
    """Keys are looked up narrow (a key is nearly always new: the whole row's columns cost more
    CPU to describe than the empty answer to read); the jobs of keys in use are then loaded."""
    owners, keys = zip(*(json.loads(pair) for pair in pairs), strict=True)
    used = session.connection().execute(_KEYS_IN_USE, {"owners": sorted(set(owners)), "keys": sorted(set(keys))})
    asked = set(pairs)  # owners IN x keys IN also matches one user's key with another user's
    ids = {job_id: pair for owner, key, job_id in used.tuples() if (pair := owner_key(owner, str(key))) in asked}
    if not ids:
        return {}
    return {ids[job.id]: job for job in session.execute(select(Job).where(Job.id.in_(list(ids)))).scalars()}


# both columns constrained: the unique (owner, key) index serves the query; built once (see queueing)
_KEYS_IN_USE = select(Job.owner, Job.idempotency_key, Job.id).where(
    Job.owner.in_(bindparam("owners", expanding=True)), Job.idempotency_key.in_(bindparam("keys", expanding=True))
)


_KEYED = "store.keyed_jobs"


def _same_request(existing: Job, body_hash: str) -> Job:
    if existing.request_hash != body_hash:
        raise IdempotencyConflict(f"Idempotency-Key was used for job {existing.id} with a different body")
    return existing


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


@dataclass(frozen=True, slots=True)
class JobFilter:
    statuses: list[str] | None = None
    kind: str | None = None
    queue: str | None = None
    tag: str | None = None
    owner: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    id_prefix: str | None = None


def list_jobs(session: Session, filters: JobFilter, *, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated on (created_at, id): stable under concurrent inserts."""
    query = select(Job)
    if filters.statuses:
        query = query.where(Job.status.in_(filters.statuses))
    for column, value in ((Job.kind, filters.kind), (Job.queue, filters.queue), (Job.owner, filters.owner)):
        if value is not None:
            query = query.where(column == value)
    if filters.created_after is not None:
        query = query.where(Job.created_at >= as_utc(filters.created_after))
    if filters.created_before is not None:
        query = query.where(Job.created_at < as_utc(filters.created_before))
    if filters.id_prefix is not None:
        query = query.where(Job.id.startswith(filters.id_prefix, autoescape=True))
    if cursor is not None:
        created, job_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id)))
    if filters.tag is not None:
        query = query.where(Job.tag_index.contains(f",{filters.tag},", autoescape=True))
    page = list(session.execute(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)).scalars())
    more = len(page) > limit
    page = page[:limit]
    return page, (encode_cursor(page[-1].created_at, page[-1].id) if more and page else None)


_ROW_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what a job's or a sweep's id may be (uuid4().hex when made here)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """Keyset pagination's position, opaque to clients: the last row's (created_at, id)."""
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor back to (created_at in UTC, id); ValueError for anything this API did not make."""
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = as_utc(datetime.fromisoformat(created))
    except (ValueError, UnicodeDecodeError, OverflowError) as error:
        raise ValueError("cursor: not a cursor returned by this API") from error
    if not _ROW_ID.match(row_id):
        raise ValueError("cursor: not a cursor returned by this API")
    return moment, row_id


def events(session: Session, job_id: str) -> list[JobEvent]:
    get_job(session, job_id)
    return list(session.execute(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).scalars())


def cancel(session: Session, job_id: str, *, actor: str, reason: str) -> Job:
    """Queued: cancelled at once. Claimed or running: CANCELLING, finished by the dispatcher."""
    for _ in range(3):  # the state may move between our read and the conditional update; decide again
        job = get_job(session, job_id)
        status = JobStatus(job.status)
        if status in TERMINAL:
            raise InvalidTransition(f"job {job_id} is already {job.status}")
        if status == JobStatus.CANCELLING:
            return job
        target = JobStatus.CANCELLED if status == JobStatus.QUEUED else JobStatus.CANCELLING
        if (
            transition(
                session,
                job_id,
                target,
                actor=actor,
                reason=reason,
                allowed_from=frozenset({status}),
                values={"cancel_requested_at": now()},
            )
            is not None
        ):
            session.expire(job)
            return get_job(session, job_id)
        session.expire(job)
    raise InvalidTransition(f"job {job_id} kept changing state; try again")


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """The moment in UTC. A naive one is taken as UTC: SQLite returns naive datetimes for
    timezone-aware columns (they were written in UTC), and it compares them as text, so a value
    bound with another offset must be converted first (SQLite's binding drops the offset)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
