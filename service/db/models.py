"""Tables: jobs, attempts (one per execution on Ray), job_events (every state change), and the
registry's companions: model owners, evaluations by (version, config), alias moves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


JOB_NAME_LENGTH = 200


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        Index("ix_job_queue_order", "status", "queue", "priority", "created_at"),
        Index("ix_job_created", "created_at", "id"),
        Index("ix_job_owner_status", "owner", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # train | eval
    name: Mapped[str] = mapped_column(String(JOB_NAME_LENGTH))
    owner: Mapped[str] = mapped_column(String(100), default="anonymous")
    queue: Mapped[str] = mapped_column(String(100), default="default")
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher runs sooner
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    tag_index: Mapped[str] = mapped_column(Text, default="")  # ',a,b,' for tag filters
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved ascl ExperimentConfig
    target: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # eval: the model evaluated
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_runtime_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_infra_retries: Mapped[int] = mapped_column(Integer, default=3)
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    experiment: Mapped[str] = mapped_column(String(200), default="ascl")  # the MLflow experiment
    status: Mapped[str] = mapped_column(String(16), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts_made: Mapped[int] = mapped_column(Integer, default=0)
    infra_failures: Mapped[int] = mapped_column(Integer, default=0)
    error_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    retried_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resume_checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # summed over ended attempts
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    held_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_evaluate: Mapped[bool] = mapped_column(default=True)  # train: the standard evaluation of its model
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Attempt(Base):
    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("job_id", "attempt_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(Integer)
    fencing_token: Mapped[str] = mapped_column(String(64))
    ray_submission_id: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # a service.contracts.AttemptStatus
    failure_class: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    checkpoint_dir: Mapped[str] = mapped_column(Text)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    log_tail: Mapped[str | None] = mapped_column(Text, nullable=True)  # kept when the attempt ends
    record_failures: Mapped[int] = mapped_column(Integer, default=0)  # tries to record its success that failed


class JobEvent(Base):
    __tablename__ = "job_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id"), index=True)
    attempt_no: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; the token itself is shown once, at creation."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | user | viewer
    kind: Mapped[str] = mapped_column(String(16))  # user | service
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelOwner(Base):
    """Who may add versions to a registered model name and move its aliases: its creator or group."""

    __tablename__ = "model_owner"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    group: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobDependency(Base):
    """`job_id` starts only once `parent_id` has ended (with success, for condition 'success')."""

    __tablename__ = "job_dependency"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id"), primary_key=True)
    parent_id: Mapped[str] = mapped_column(ForeignKey("job.id"), primary_key=True, index=True)
    condition: Mapped[str] = mapped_column(String(16))  # success | any


class Queue(Base):
    """A named queue and the limits the operator set on it (None: no limit)."""

    __tablename__ = "queue"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    max_gpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    user_max_gpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    user_max_cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    default_priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Usage(Base):
    """A user's recent use of a queue for fair share: GPU-second equivalents as of `at`, halving
    every half-life."""

    __tablename__ = "usage"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClusterState(Base):
    """The cluster as the dispatcher last saw it (one row): the API explains waiting jobs with it."""

    __tablename__ = "cluster_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nodes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"free": {...}, "total": {...}}]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Sweep(Base):
    """A hyperparameter search: its trials are ordinary jobs (sweep_id, trial_number); the search
    state itself is an Optuna study named `study_name` in this same database."""

    __tablename__ = "sweep"
    __table_args__ = (Index("ix_sweep_created", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # RUNNING STOPPING SUCCEEDED FAILED CANCELLED
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # STOPPING: the state it ends in
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the creation body, as validated
    base_spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved config every trial starts from
    study_name: Mapped[str] = mapped_column(String(200))
    max_trials: Mapped[int] = mapped_column(Integer)
    max_concurrency: Mapped[int] = mapped_column(Integer)
    max_failed_trials: Mapped[int] = mapped_column(Integer)
    stop_running: Mapped[bool] = mapped_column(default=False)  # on cancel: stop running trials, or let them end
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it ended
    best: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # best trial or Pareto front
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the parent run
    summarized: Mapped[bool] = mapped_column(default=False)  # ended, and its MLflow run closed with the summary
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvalCache(Base):
    """The one eval job of a model version under one resolved evaluation config (its hash): an
    identical request links to it instead of running again. `standard`: the service's standard
    evaluation, whose figures tag the version."""

    __tablename__ = "eval_cache"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)  # no FK: inserted with its job, unordered
    standard: Mapped[bool] = mapped_column()


class AliasMove(Base):
    """An alias moved to a version: by whom, when, and the figures the decision compared."""

    __tablename__ = "alias_move"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    alias: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(32))
    previous_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    figures: Mapped[dict[str, float]] = mapped_column(JSON)
