"""HTTP request and response bodies. The experiment itself is validated by ascl.config; its schema
in OpenAPI is generated from the config dataclasses (experiment_schema.py). Every user-controlled
value is bounded here: strings by length and alphabet (no NUL or control characters, which
PostgreSQL refuses), numbers by range (no Infinity or NaN, no integer beyond a column's range)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from ascl.config_fields import SURROGATES
from service.api.experiment_schema import experiment_schema, overrides_schema
from service.auth.principal import LABEL_LENGTH, LABEL_PATTERN
from service.contracts import JOB_ID_PATTERN, PRINTABLE, QUEUE_NAME_PATTERN, JobKind, ModelName
from service.db.models import Job, JobEvent
from service.jobs.store import as_utc


def _rfc3339(moment: datetime) -> str:
    """One timestamp form everywhere: RFC 3339 in UTC with an explicit offset (SQLite hands back
    naive datetimes for timezone-aware columns; they were written in UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]


def _in_utc(moment: datetime) -> datetime:
    try:
        return as_utc(moment)
    except OverflowError:  # year 1 at +05:00, year 9999 at -05:00
        raise ValueError("out of range once converted to UTC") from None


UtcMoment = Annotated[datetime, AfterValidator(_in_utc)]  # a time filter: any offset, compared in UTC
Text = Annotated[str, Field(max_length=200, pattern=PRINTABLE)]
Label = Annotated[str, Field(min_length=1, max_length=LABEL_LENGTH, pattern=LABEL_PATTERN)]
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN, description="lowercase letters, digits, _ . -; 1-64")]


def _no_parent_segment(name: str) -> str:
    """A local MLflow store puts the experiment's artifacts under <root>/<name>: no '..' climbs out."""
    if ".." in name.split("/"):
        raise ValueError("an experiment name has no '..' segment")
    return name


ExperimentName = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_ .:/+-]*$"),
    AfterValidator(_no_parent_segment),
]
MAX_JSON_DEPTH = 8  # an experiment nests three levels (section, field, list)
# a key of free-form JSON names a config section or field (dotted, in overrides): an unknown one is
# named back in the answer, so what it may hold is bounded here
_FIELD_KEY = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_SURROGATE = re.compile(f"[{SURROGATES}]")  # pydantic refuses one in a typed string, not in free JSON


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON (an experiment, overrides) nested at most MAX_JSON_DEPTH levels (pydantic fails
    to serialise a value nested 255 levels, a body of 1.6 kB), its keys field names, its strings
    Unicode text. The config checks the rest (what each field accepts)."""
    level = 1
    containers: list[Any] = [value]
    while containers:
        if level > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        children: list[Any] = []
        for container in containers:
            if isinstance(container, dict):
                if not all(isinstance(key, str) and _FIELD_KEY.fullmatch(key) for key in container):
                    raise ValueError("a key that is no field name (letters, digits, '_', '.', '-'; 1 to 100)")
                children.extend(container.values())
            else:
                children.extend(container)
        if any(isinstance(child, str) and _SURROGATE.search(child) for child in children):
            raise ValueError("a string with a lone surrogate (\\ud800 to \\udfff), which is no Unicode text")
        containers = [child for child in children if isinstance(child, dict | list)]
        level += 1
    return value


Experiment = Annotated[dict[str, Any], AfterValidator(_plain_json), WithJsonSchema(experiment_schema())]
Overrides = Annotated[dict[str, Any], AfterValidator(_plain_json), WithJsonSchema(overrides_schema())]

SUMMARY_PROGRESS = frozenset({"phase", "epoch", "epochs", "step", "total_steps", "images_per_s", "eta_s"})
PRIORITY_LIMIT = 1000  # the column's range is far wider; who may use how much is a role's matter
MAX_RUNTIME_LIMIT_S = 30 * 24 * 3600


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gpus: float = Field(
        0.0,
        ge=0,
        le=64,
        description="GPUs per worker; fractions share a GPU; a train job's N > 1 on one worker is N one-GPU workers",
    )
    cpus: float = Field(1.0, gt=0, le=1024, description="CPUs per worker")
    memory_gb: float | None = Field(None, gt=0, le=4096, description="memory per worker, GiB")
    workers: int = Field(1, ge=1, le=64, description="data-parallel workers (Ray Train); gpus and cpus are per worker")


class Dependency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job: Annotated[str, Field(pattern=JOB_ID_PATTERN)]
    on: Literal["success", "any"] = Field("success", description="start after the job succeeded, or after it ended")


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "kind": "train",
                    "preset": "digits-ascl",
                    "overrides": {"train.epochs": 3},
                    "tags": ["demo"],
                    "model_name": "digits-ascl",
                },
                {
                    "kind": "train",
                    "preset": "paper-cifar10-resnet18-ascl",
                    "resources": {"gpus": 1, "cpus": 4},
                    "queue": "gpu",
                    "priority": 10,
                    "max_runtime_s": 7200,
                },
                {"kind": "eval", "model": "models:/digits-ascl/1", "overrides": {"eval.pgd_steps": 50}},
            ]
        },
    )

    kind: JobKind = JobKind.TRAIN
    name: Text | None = None
    preset: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="a preset name (GET /presets); or give `experiment`"
    )
    experiment: Experiment | None = Field(None, description="a full ascl ExperimentConfig")
    overrides: Overrides = Field(default_factory=dict, description='dotted paths, e.g. {"train.epochs": 3}')
    model: Annotated[str, Field(max_length=300, pattern=PRINTABLE)] | None = Field(
        None, description="eval: models:/NAME/VERSION, models:/NAME@ALIAS or a train job's id"
    )
    model_name: ModelName | None = Field(None, description="train: register the model under this name")
    model_group: Label | None = Field(
        None, description="train, a new model name: a group of yours that may also add versions and move aliases"
    )
    mlflow_experiment: ExperimentName = Field("ascl", description="the MLflow experiment of the job's run")
    queue: QueueName = "default"
    priority: int = Field(0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, description="higher runs sooner")
    tags: list[Label] = Field(default_factory=list, max_length=50)
    resources: Resources = Field(default_factory=Resources)
    max_runtime_s: int | None = Field(None, gt=0, le=MAX_RUNTIME_LIMIT_S, description="default: the operator's")
    max_infra_retries: int = Field(3, ge=0, le=20)
    force_queue: bool = Field(False, description="queue even if no node can hold the resources today")
    depends_on: list[Dependency] = Field(default_factory=list, max_length=20, description="jobs to wait for")
    hold: bool = Field(False, description="queue it held: it keeps its place but starts only once released")
    auto_evaluate: bool = Field(
        True, description="train: run the standard robustness evaluation of the registered version (false: opt out)"
    )


class JobRead(BaseModel):
    id: str
    kind: str
    name: str
    status: str
    owner: str
    queue: str
    priority: int
    tags: list[str]
    resources: dict[str, Any]
    max_runtime_s: int | None
    max_infra_retries: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    attempts: int
    queue_position: int | None = None  # 1-based, in the one order the dispatcher starts jobs in
    pending_reason: str | None = None  # PRIORITY, RESOURCES, USER_LIMIT, QUEUE_LIMIT, DEPENDENCY, HELD, INFEASIBLE
    estimated_start: Timestamp | None = None  # from the running jobs' ETAs; null when it cannot be known
    held: bool = False
    depends_on: list[str] = Field(default_factory=list)
    sweep_id: str | None = None
    trial_number: int | None = None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error_class: str | None
    error_message: str | None
    mlflow_experiment: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    mlflow_run_url: str | None = None
    model_name: str | None
    registered_model_version: str | None
    retried_from: str | None
    spec: dict[str, Any]
    target: dict[str, Any] | None
    auto_evaluate: bool = True
    redacted: bool = False  # another user's job whose details are not shared: see summary_of

    @classmethod
    def summary_of(cls, job: Job, **extra: Any) -> JobRead:
        """Another user's job where details are not shared: what the queue shows (state, queue,
        resources, progress), nothing of its run, model or outcome. An evaluation's name is its
        kind: by default it names the model evaluated."""
        progress = {key: value for key, value in (job.progress or {}).items() if key in SUMMARY_PROGRESS}
        return cls.of(job, **extra).model_copy(
            update={
                "name": JobKind.EVAL.value if job.kind == JobKind.EVAL else job.name,
                "spec": {},
                "target": None,
                "result": None,
                "error_class": None,
                "error_message": None,
                "progress": progress or None,
                "mlflow_run_id": None,
                "mlflow_run_url": None,
                "model_name": None,
                "registered_model_version": None,
                "retried_from": None,
                "redacted": True,
            }
        )

    @classmethod
    def of(cls, job: Job, **extra: Any) -> JobRead:
        return cls(
            id=job.id,
            kind=job.kind,
            name=job.name,
            status=job.status,
            owner=job.owner,
            queue=job.queue,
            priority=job.priority,
            tags=job.tags or [],
            resources=job.resources,
            max_runtime_s=job.max_runtime_s,
            max_infra_retries=job.max_infra_retries,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts_made,
            progress=job.progress,
            result=job.result,
            error_class=job.error_class,
            error_message=job.error_message,
            mlflow_experiment=job.experiment,
            mlflow_experiment_id=job.mlflow_experiment_id,
            mlflow_run_id=job.mlflow_run_id,
            model_name=job.model_name,
            registered_model_version=job.registered_model_version,
            retried_from=job.retried_from,
            held=job.held_at is not None,
            sweep_id=job.sweep_id,
            trial_number=job.trial_number,
            spec=job.spec,
            target=job.target,
            auto_evaluate=job.auto_evaluate,
            **extra,
        )


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None


class EventRead(BaseModel):
    id: int
    at: Timestamp
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    attempt: int | None

    @classmethod
    def of(cls, event: JobEvent) -> EventRead:
        return cls(
            id=event.id,
            at=event.created_at,
            from_status=event.from_status,
            to_status=event.to_status,
            actor=event.actor,
            reason=event.reason,
            attempt=event.attempt_no,
        )


class RetryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"overrides": {"train.epochs": 150}, "resume": True},
                {"overrides": {"optim.lr": 0.05}, "resume": False},
            ]
        },
    )
    overrides: Overrides = Field(default_factory=dict)
    resume: bool = Field(False, description="resume from the original job's latest checkpoint")


class ErrorBody(BaseModel):
    error: str
    detail: str
    field: str | None = None
