"""The typed contract between the control plane and an attempt's worker process: what the worker
fetches (`AttemptSpec`), what it reports while it runs (`Heartbeat`: `Progress`, `EpochReport`) and
how it ends (`AttemptOutcome`). Both sides import these models, so nothing crosses a process
boundary as a dict read by key. Pydantic only: the worker imports this without the database or HTTP
server, the API without torch."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ascl.config_fields import CONTROL_CHARACTERS

HEARTBEAT_INTERVAL_S = 10.0  # how often a worker reports; the control plane passes its own setting
ATTEMPT_TOKEN_HEADER = "X-Attempt-Token"  # the fencing token travels in a header, never in a URL
ERROR_MESSAGE_LIMIT = 4000


class JobKind(StrEnum):
    TRAIN = "train"
    EVAL = "eval"


class AttemptStatus(StrEnum):
    CLAIMED = "CLAIMED"  # a dispatcher took the job; the Ray submission is being made
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"  # stopped on purpose: cancelled, timed out or superseded
    LOST = "LOST"  # the execution disappeared (node or process lost); the job is retried
    EXPIRED = "EXPIRED"  # the claim never reached Ray


class FailureClass(StrEnum):
    USER_ERROR = "USER_ERROR"  # bad config, an exception in training: not retried
    OOM = "OOM"
    INFRA_LOST = "INFRA_LOST"  # node or process lost, result lost: retried on the infra budget
    SUBMIT_FAILED = "SUBMIT_FAILED"  # Ray never accepted the submission, claim after claim
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    UNRECORDABLE = "UNRECORDABLE"  # the outcome could not be recorded (e.g. the registry refused it)


class Phase(StrEnum):
    STARTING = "starting"
    TRAINING = "training"
    EVALUATING = "evaluating"
    LOGGING_MODEL = "logging model"
    ENDED = "ended"  # set by the control plane when the job reaches a terminal state


PRINTABLE = f"^[^{CONTROL_CHARACTERS}]*$"  # one line, no control character (PostgreSQL refuses NUL)
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # ours are 32 hex digits; bounded wherever one is taken
ID_PREFIX_PATTERN = r"^[0-9a-f]{4,32}$"  # the start of a job's or a sweep's id, as lists show them
QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
MODEL_NAME_PATTERN = f"^{_MODEL_NAME}$"
_VERSION_OR_ALIAS = r"(?:/(?P<version>[1-9][0-9]{0,8})|@(?P<alias>[A-Za-z][\w-]{0,99}))"
_MODEL_URI = re.compile(f"^models:/(?P<name>{_MODEL_NAME}){_VERSION_OR_ALIAS}$")
ModelName = Annotated[
    str, Field(pattern=MODEL_NAME_PATTERN, description="letters, digits, '.', '_' and '-' (at most 200)")
]


class ModelRef(BaseModel):
    """A registered model by version or alias: `models:/NAME/VERSION` or `models:/NAME@ALIAS`.
    Names are restricted to a safe alphabet, so they can never break out of a registry filter."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Raises ValueError with the accepted forms when `text` is not a model URI."""
        match = _MODEL_URI.match(text)
        if match is None:
            raise ValueError(
                f"expected models:/NAME/VERSION or models:/NAME@ALIAS, NAME of letters, digits, '.', '_', '-' "
                f"(got {text[:200]!r})"
            )
        return cls(name=match["name"], version=match["version"], alias=match["alias"])

    @staticmethod
    def looks_like_uri(text: str) -> bool:
        return text.startswith("models:/")

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


class EvalTarget(BaseModel):
    """The model an eval job evaluates, resolved at submission to one concrete version: moving an
    alias afterwards does not change what the job runs. An eval of a train job it depends on is
    resolved when that job has registered its model (version and run are null until then)."""

    requested: str  # what the user asked for: a models:/ URI (version or alias) or a train job's id
    model_name: str
    model_version: str | None
    run_id: str | None  # the MLflow run that logged the model (its checkpoint and config.json)
    job_id: str | None = None  # the train job, when the model was named by its job

    @property
    def resolved(self) -> bool:
        return self.model_version is not None and self.run_id is not None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.model_version}"


class WorkerResources(BaseModel):
    """What each data-parallel worker reserves: the dispatcher counted `workers` times this."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory_gb: float | None = None


class AttemptSpec(BaseModel):
    """What an attempt's worker fetches first: everything it needs to run, and nothing else."""

    job_id: str
    attempt: int
    kind: JobKind
    name: str
    spec: dict[str, Any]  # the resolved ascl ExperimentConfig that runs, exactly as stored on the job
    target: EvalTarget | None
    checkpoint_dir: str
    resume_checkpoint: str | None
    mlflow_run_id: str
    workers: int = 1  # data-parallel workers (Ray Train) for a train job
    per_worker: WorkerResources = Field(default_factory=WorkerResources)


MAX_REPORT_DEPTH = 8  # a report nests four levels (outcome, train, test, a figure's list)


def finite_only(data: Any, depth: int = 0) -> Any:
    """`data` without its NaN and infinite numbers: a figure that is 0/0 (a batch without negatives,
    an empty split) or a diverged loss is left out of a report rather than losing it all. A
    non-finite value is dropped from a mapping (an optional field becomes null, a required one is
    missing), and becomes null in a list. Read before the attempt's token is checked, so bounded:
    a body nested hundreds of levels deep is refused, not a RecursionError (a 500)."""
    if isinstance(data, dict | list) and depth > MAX_REPORT_DEPTH:
        raise ValueError(f"nested more than {MAX_REPORT_DEPTH} levels deep")
    if isinstance(data, dict):
        return {key: finite_only(value, depth + 1) for key, value in data.items() if not _non_finite(value)}
    if isinstance(data, list):
        return [None if _non_finite(item) else finite_only(item, depth + 1) for item in data]
    return data


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


MAX_METRICS = 64  # per report: the loop's own figures are about twenty
Metrics = Annotated[
    dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")], float], Field(max_length=MAX_METRICS)
]


class WorkerReport(BaseModel):
    """What a worker sends holds finite numbers only: NaN and the infinities are not JSON (PostgreSQL
    refused them with a 500) and readers do arithmetic on these figures (a NaN ETA broke the queue
    view), so they are left out as the report is made or read (`finite_only`)."""

    model_config = ConfigDict(allow_inf_nan=False)  # "NaN" as a string: refused

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        return finite_only(data)


class Progress(WorkerReport):
    """The latest progress of a running attempt, shown on the job as it is."""

    phase: Phase = Phase.STARTING
    epoch: int | None = None  # 0-based epoch in progress
    epochs: int | None = None
    step: int | None = None  # global optimizer step, 1-based
    total_steps: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    lr: float | None = None
    metrics: Metrics = Field(default_factory=dict)  # training averages since the last report
    val: Metrics = Field(default_factory=dict)  # the last validation (clean_acc, robust_acc)
    checkpoint: str | None = None
    checkpoint_epoch: int | None = None
    best_checkpoint: str | None = None
    best_checkpoint_epoch: int | None = None


class EpochReport(WorkerReport):
    """One finished epoch, as the training loop summarises it."""

    epoch: int = Field(ge=0)
    epochs: int = Field(ge=1)
    lr: float
    seconds: float
    images_per_s: float
    train: Metrics
    val: Metrics = Field(default_factory=dict)


class Heartbeat(WorkerReport):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "progress": {
                        "phase": "training",
                        "epoch": 3,
                        "step": 1200,
                        "total_steps": 46800,
                        "images_per_s": 5400.0,
                        "eta_s": 1700.0,
                    },
                }
            ]
        }
    )

    progress: Progress | None = None
    epoch: EpochReport | None = None  # sent once per finished epoch, in order


class HeartbeatReply(BaseModel):
    action: Literal["continue", "stop"]


class TrainResult(WorkerReport):
    model_uri: str  # the logged model (runs:/ or models:/m-...), registered by the control plane
    checkpoint: str  # the file the model came from: best.pt or last.pt
    test: dict[str, Any]  # the evaluation report's summary of the chosen checkpoint
    best_epoch: int | None = None
    best_val_robust_acc: float | None = None
    epochs_completed: int
    resumed_from_epoch: int
    positive_fraction: float | None = None
    negative_fraction: float | None = None
    seconds: float


class EvalResult(WorkerReport):
    model_uri: str
    model_name: str
    model_version: str
    report: dict[str, Any]


class AttemptOutcome(WorkerReport):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"succeeded": False, "error_class": "OOM", "error_message": "CUDA out of memory"},
            ]
        }
    )

    succeeded: bool
    train: TrainResult | None = None
    eval: EvalResult | None = None
    error_class: FailureClass | None = None
    error_message: str | None = Field(None, max_length=ERROR_MESSAGE_LIMIT)
