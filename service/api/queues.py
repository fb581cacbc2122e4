"""Named queues and their limits: everyone reads them, admins set them (or the operator's queues
file does, at start). A job names an existing queue; limits apply from the next dispatch cycle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from sqlalchemy import func, select

from service.api.auth import CurrentUser
from service.api.deps import Sessions
from service.api.schemas import Timestamp
from service.auth.principal import Role, require_role
from service.contracts import QUEUE_NAME_PATTERN
from service.db import read_scope, session_scope
from service.db.models import Job, Queue
from service.jobs import queue_config
from service.jobs.errors import InvalidTransition, NotFound
from service.jobs.status import ACTIVE, JobStatus

router = APIRouter()
QueuePath = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN)]


class QueueRead(BaseModel):
    name: str
    description: str
    max_gpus: float | None
    max_cpus: float | None
    user_max_gpus: float | None
    user_max_cpus: float | None
    default_priority: int | None
    updated_by: str
    updated_at: Timestamp
    queued: int = 0
    running: int = 0

    @classmethod
    def of(cls, row: Queue, counts: dict[tuple[str, str], int]) -> QueueRead:
        waiting = counts.get((row.name, JobStatus.QUEUED.value), 0)
        active = sum(counts.get((row.name, status.value), 0) for status in ACTIVE)
        return cls(
            name=row.name,
            description=row.description,
            max_gpus=row.max_gpus,
            max_cpus=row.max_cpus,
            user_max_gpus=row.user_max_gpus,
            user_max_cpus=row.user_max_cpus,
            default_priority=row.default_priority,
            updated_by=row.updated_by,
            updated_at=row.updated_at,
            queued=waiting,
            running=active,
        )


@router.get("/queues", response_model=list[QueueRead])
def list_queues(sessions: Sessions, _: CurrentUser) -> list[QueueRead]:
    with read_scope(sessions) as session:
        counts = {
            (queue, status): int(count)
            for queue, status, count in session.execute(
                select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status)
            ).tuples()
        }
        return [QueueRead.of(row, counts) for row in session.execute(select(Queue).order_by(Queue.name)).scalars()]


@router.put("/queues/{name}", response_model=QueueRead)
def put_queue(
    name: QueuePath, body: queue_config.QueueSpec, request: Request, sessions: Sessions, principal: CurrentUser
) -> QueueRead:
    """Create a queue or replace its limits (admins)."""
    require_role(principal, Role.ADMIN, "define queues")
    with session_scope(sessions) as session:
        row = queue_config.upsert(session, name, body, actor=principal.subject)
        request.app.state.queue_view.forget()
        return QueueRead.of(row, {})


@router.delete("/queues/{name}", status_code=204)
def delete_queue(name: QueuePath, sessions: Sessions, principal: CurrentUser) -> None:
    """Remove a queue no unfinished job names (admins); 'default' stays."""
    require_role(principal, Role.ADMIN, "remove queues")
    with session_scope(sessions) as session:
        row = session.get(Queue, name)
        if row is None:
            raise NotFound(f"no queue {name}")
        if name == "default":
            raise InvalidTransition("the default queue cannot be removed")
        unfinished = session.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.queue == name, Job.status.in_([JobStatus.QUEUED.value, *(s.value for s in ACTIVE)]))
        ).scalar_one()
        if unfinished:
            raise InvalidTransition(f"queue {name} still has {unfinished} unfinished jobs")
        session.delete(row)
