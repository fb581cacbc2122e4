"""HTTP request and response bodies. The experiment itself is validated by ascl.config."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.db.models import Job, JobEvent


class Resources(BaseModel):
    gpus: float = Field(0.0, ge=0, description="GPUs for the attempt; fractions share a GPU")
    cpus: float = Field(1.0, gt=0)
    memory_gb: float | None = Field(None, gt=0)


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
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

    kind: Literal["train", "eval"] = "train"
    name: str | None = Field(None, max_length=200)
    preset: str | None = Field(None, description="a preset name (GET /presets); or give `experiment`")
    experiment: dict[str, Any] | None = Field(None, description="a full ascl ExperimentConfig as JSON")
    overrides: dict[str, Any] = Field(default_factory=dict, description='dotted paths, e.g. {"train.epochs": 3}')
    model: str | None = Field(None, description="eval: models:/NAME/VERSION, models:/NAME@ALIAS or a train job id")
    model_name: str | None = Field(None, max_length=200, description="train: register the model under this name")
    mlflow_experiment: str = Field("ascl", min_length=1, max_length=200, description="the MLflow experiment")
    queue: str = Field("default", min_length=1, max_length=100)
    priority: int = Field(0, description="higher runs sooner")
    tags: list[str] = Field(default_factory=list, max_length=50)
    resources: Resources = Field(default_factory=Resources)
    max_runtime_s: int | None = Field(None, gt=0)
    max_infra_retries: int = Field(3, ge=0, le=20)
    force_queue: bool = Field(False, description="queue even if no node can hold the resources today")


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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    queue_position: int | None = None
    pending_reason: str | None = None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error_class: str | None
    error_message: str | None
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    mlflow_run_url: str | None = None
    model_name: str | None
    registered_model_version: str | None
    retried_from: str | None
    spec: dict[str, Any]
    target: dict[str, Any] | None

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
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts_made,
            progress=job.progress,
            result=job.result,
            error_class=job.error_class,
            error_message=job.error_message,
            mlflow_experiment_id=job.mlflow_experiment_id,
            mlflow_run_id=job.mlflow_run_id,
            model_name=job.model_name,
            registered_model_version=job.registered_model_version,
            retried_from=job.retried_from,
            spec=job.spec,
            target=job.target,
            **extra,
        )


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None


class EventRead(BaseModel):
    id: int
    at: datetime
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
    overrides: dict[str, Any] = Field(default_factory=dict)
    resume: bool = Field(False, description="resume from the original job's latest checkpoint")


class Heartbeat(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempt": 1,
                    "token": "3f2a...",
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

    attempt: int
    token: str
    progress: dict[str, Any] | None = None
    epoch_metrics: dict[str, Any] | None = None


class AttemptResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempt": 1,
                    "token": "3f2a...",
                    "succeeded": True,
                    "result": {"model_uri": "models:/m-1a2b", "test": {}},
                },
                {
                    "attempt": 2,
                    "token": "9c0d...",
                    "succeeded": False,
                    "error_class": "OOM",
                    "error_message": "OutOfMemoryError: CUDA out of memory",
                },
            ]
        }
    )

    attempt: int
    token: str
    succeeded: bool
    result: dict[str, Any] | None = None
    error_class: str | None = None
    error_message: str | None = None


class ErrorBody(BaseModel):
    error: str
    detail: str
    field: str | None = None
