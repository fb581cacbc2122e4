"""Queue definitions: from the admin API or from the operator's queues file (YAML or JSON, applied
at start), e.g.

    queues:
      gpu: {max_gpus: 16, user_max_gpus: 4, default_priority: 0, description: "the A100 pool"}
      debug: {max_cpus: 8, user_max_cpus: 2}
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from service.contracts import PRINTABLE, QUEUE_NAME_PATTERN
from service.db.models import Queue
from service.jobs.errors import InvalidSpec
from service.jobs.store import now


class QueueSpec(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"max_gpus": 16, "user_max_gpus": 4, "description": "the A100 pool"}]},
    )

    description: str = Field("", max_length=500, pattern=PRINTABLE)
    max_gpus: float | None = Field(None, ge=0, le=100_000, description="running GPUs of the whole queue")
    max_cpus: float | None = Field(None, ge=0, le=1_000_000)
    user_max_gpus: float | None = Field(None, ge=0, le=100_000, description="running GPUs of one user")
    user_max_cpus: float | None = Field(None, ge=0, le=1_000_000)
    default_priority: int | None = Field(None, ge=-1000, le=1000, description="for jobs that set none")


class QueuesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queues: dict[str, QueueSpec]


def upsert(session: Session, name: str, spec: QueueSpec, *, actor: str) -> Queue:
    row = session.get(Queue, name)
    if row is None:
        row = Queue(name=name, updated_by=actor, updated_at=now())
        session.add(row)
    for field, value in spec.model_dump().items():
        setattr(row, field, value)
    row.updated_by, row.updated_at = actor, now()
    session.flush()
    return row


def load_file(path: Path) -> dict[str, QueueSpec]:
    """The queues of an operator's file; errors name the file and the field."""
    try:
        parsed = QueuesFile.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise InvalidSpec("queues_file", f"cannot read {path}: {error}") from None
    except ValidationError as error:
        raise InvalidSpec("queues_file", f"{path}: {error}") from None
    for name in parsed.queues:
        if re.fullmatch(QUEUE_NAME_PATTERN, name) is None:
            raise InvalidSpec("queues_file", f"{path}: queue name {name!r} must match {QUEUE_NAME_PATTERN}")
    return parsed.queues
