"""Sweep request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import JobCreate, Text, Timestamp
from service.db.models import Sweep
from service.sweeps.objectives import Objective
from service.sweeps.space import Space
from service.sweeps.study import Algorithm, EarlyStopping

MAX_SWEEP_TRIALS = 10_000  # the schema's bound; the operator's limit (max_sweep_trials) may be lower


class SweepCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "temp-vs-eps",
                    "base": {"preset": "digits-ascl", "overrides": {"train.epochs": 3}, "resources": {"cpus": 1}},
                    "space": {
                        "objective.temperature": {"values": [0.1, 0.2]},
                        "attack.eps": {"low": 0.1, "high": 0.3},
                        "optim.lr": {"low": 0.001, "high": 0.1, "log": True},
                    },
                    "algorithm": "random",
                    "seed": 0,
                    "objective": [{"metric": "val.robust_acc", "mode": "max"}],
                    "max_trials": 20,
                    "max_concurrency": 4,
                    "max_failed_trials": 3,
                    "early_stopping": {"rule": "median", "metric": "val.robust_acc", "grace_epochs": 2},
                }
            ]
        },
    )

    name: Text = "sweep"
    base: JobCreate = Field(description="exactly a job-creation body: every trial is this job with its parameters")
    space: Space = Field(description="config fields (dotted, like overrides) and their values")
    algorithm: Algorithm = "tpe"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    objective: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="val.robust_acc", mode="max")], min_length=1, max_length=2
    )
    max_trials: int = Field(20, ge=1, le=MAX_SWEEP_TRIALS)
    max_concurrency: int = Field(4, ge=1, le=1000)
    max_failed_trials: int = Field(3, ge=1, le=MAX_SWEEP_TRIALS)
    early_stopping: EarlyStopping | None = None


class SweepPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"max_trials": 40, "max_concurrency": 4}]}
    )

    max_trials: int | None = Field(None, ge=1, le=MAX_SWEEP_TRIALS)
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    max_failed_trials: int | None = Field(None, ge=1, le=MAX_SWEEP_TRIALS)


class SweepCancel(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"running": "finish"}]})

    running: Literal["stop", "finish"] = Field("stop", description="stop running trials, or let them finish")


class SweepRead(BaseModel):
    id: str
    name: str
    owner: str
    status: str
    outcome: str | None
    reason: str | None
    algorithm: str
    objective: list[dict[str, Any]]
    max_trials: int
    max_concurrency: int
    max_failed_trials: int
    trials: dict[str, int] = Field(description="trial jobs by state")
    best: dict[str, Any] | None = Field(
        description="the best trial, or {'pareto_front': [...]} for two objectives (null: none yet, or another "
        "user's unshared sweep)"
    )
    gpu_seconds: float
    mlflow_run_id: str | None
    mlflow_run_url: str | None = None
    created_at: Timestamp
    finished_at: Timestamp | None
    request: dict[str, Any] | None = Field(description="the creation body (null for another user's unshared sweep)")

    @classmethod
    def of(
        cls, sweep: Sweep, *, trials: dict[str, int], gpu_seconds: float, details: bool, ui: str | None
    ) -> SweepRead:
        run_id = sweep.mlflow_run_id if details else None  # another user's unshared sweep: its state only
        url = None
        if ui and run_id:
            url = f"{ui}/#/experiments/{sweep.mlflow_experiment_id}/runs/{run_id}"
        return cls(
            id=sweep.id,
            name=sweep.name,
            owner=sweep.owner,
            status=sweep.status,
            outcome=sweep.outcome,
            reason=sweep.reason,
            algorithm=sweep.request["algorithm"],
            objective=sweep.request["objective"],
            max_trials=sweep.max_trials,
            max_concurrency=sweep.max_concurrency,
            max_failed_trials=sweep.max_failed_trials,
            trials=trials,
            best=sweep.best if details else None,
            gpu_seconds=gpu_seconds,
            mlflow_run_id=run_id,
            mlflow_run_url=url,
            created_at=sweep.created_at,
            finished_at=sweep.finished_at,
            request=sweep.request if details else None,
        )


class SweepPage(BaseModel):
    items: list[SweepRead]
    next_cursor: str | None


class TrialRead(BaseModel):
    number: int
    job_id: str
    status: str
    reason: str | None = Field(description="e.g. pruned, with the rule and epoch")
    params: dict[str, Any]
    values: list[float | None]
    epochs: int
    gpu_seconds: float


class DryRunTrial(BaseModel):
    number: int
    params: dict[str, Any]
    spec: dict[str, Any] | None = Field(description="the trial's job spec (null: its parameters make no config)")
    problem: str | None = Field(None, description="why the parameters make no config (the trial fails at once)")


class SweepDryRun(BaseModel):
    trials_planned: int
    first_trials: list[DryRunTrial]
