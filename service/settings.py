"""Process settings from the environment (prefix ASCL_). Experiment knobs never live here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.contracts import HEARTBEAT_INTERVAL_S
from service.credentials import default_config_dir
from service.jobs.spec_limits import SpecLimits
from service.models.evaluation import StandardEval
from service.scheduling.model import Policy


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASCL_")

    data_dir: Path = Path(".ascl")
    database_url: str | None = None  # default: SQLite file in data_dir; production: postgresql+psycopg://...
    ray_address: str | None = None  # default: start a local Ray; else this cluster's GCS (e.g. head:6379)
    ray_dashboard_url: str | None = None  # the cluster's job server (default: the dashboard the cluster reports)
    mlflow_tracking_uri: str | None = None  # default: SQLite store in data_dir
    # where attempts keep their checkpoints: a file:// URI (or a path) that every Ray node reaches at
    # the same path, i.e. shared storage (NFS, a cluster filesystem) in a multi-node cluster;
    # default: data_dir/checkpoints, enough for a single machine
    checkpoint_uri: str | None = None
    host: str = "127.0.0.1"
    access_log: bool = False  # a line per request (polls, heartbeats); /metrics counts them either way
    port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port
    mlflow_port: int | None = None  # the embedded MLflow server's port (default: a free one)
    mlflow_ui_url: str | None = None  # where users open MLflow (default: the tracking URI when it is http)
    public_url: str | None = None  # how workers reach the API; default http://host:port
    poll_interval_s: float = 1.0
    heartbeat_timeout_s: float = 300.0
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S  # how often workers report
    worker_api_loss_s: float = 600.0  # a worker that cannot reach the API this long stops itself
    repair_interval_s: float = 60.0  # how often the reconciler looks for orphans (Ray) and open runs (MLflow)
    claim_lease_s: float = 60.0  # a claim older than this that never reached Ray is requeued
    max_claim_expiries: int = 5  # consecutive claims that never reached Ray before the job fails
    ray_job_retention_s: float = 3600.0  # an ended attempt's Ray job is deleted after this (its log tail is kept)
    worker_python: str = sys.executable  # the interpreter Ray jobs run the worker entrypoint with
    dispatcher: bool = True  # run the dispatcher/monitor inside the API process (embedded mode)
    dispatcher_name: str = "dispatcher"  # the actor of its transitions in job events
    local_ray_num_cpus: int | None = None
    local_ray_num_gpus: int | None = None
    # datasets the API can see: a relative data.data_dir resolves here, and is checked at submission
    data_root: Path | None = None
    default_max_runtime_s: int | None = 7 * 24 * 3600  # for jobs that set none
    log_stream_max_s: float = 3600.0  # a log stream ends after this; the client reconnects
    log_streams_per_user: int = 8
    log_streams_total: int = 256
    max_body_bytes: int = 262_144  # larger request bodies are refused (413); a job's is a few kB
    body_deadline_s: float = 30.0  # a request body that has not arrived by then is refused (408)
    requests_per_user: int = 16  # a user's requests in progress at once; more are refused (429)
    max_tokens_per_user: int = 100  # a subject's live API tokens
    # upper bounds on what a job may cost, over the defaults in service/jobs/spec_limits.py, e.g.
    # ASCL_SPEC_LIMITS='{"train.epochs": 200, "eval.autoattack_examples": 10000}'
    spec_limits: dict[str, float] = Field(default_factory=dict)
    # queues and fair share
    queues_file: Path | None = None  # YAML or JSON: the queues and their limits, applied at start
    max_queued_per_user: int = 1000  # a user's jobs waiting at once
    max_sweep_trials: int = 1000  # trials one sweep may plan
    max_running_sweeps_per_user: int = 10  # a user's sweeps that may still create trials (RUNNING)
    fair_share_half_life_s: float = 24 * 3600.0
    fair_share_cpu_weight: float = 1 / 16  # a CPU-second counts as this many GPU-seconds
    aging_s: float = 3600.0  # a waiting job gains a priority point per this long, ...
    aging_max: int = 10  # ... at most this many
    reserve_after_s: float = 3600.0  # a job waiting this long holds capacity back from jobs behind it
    # who may do what
    # the standard evaluation every registered version gets (unless its train job opts out; off: never)
    auto_eval: bool = True
    auto_eval_pgd_steps: int = Field(20, ge=1, le=10_000)
    auto_eval_autoattack: Literal["none", "standard", "custom"] = "standard"
    auto_eval_examples: int = Field(1000, ge=1, le=1_000_000)  # the first N test examples, for every figure
    share_job_details: bool = False  # let every user read others' specs, results, logs, metrics and models
    user_priority_limit: int = 10  # |priority| a non-admin may ask for; the admin role goes up to 1000
    token_cache_s: float = 10.0  # a token revoked through another API process stops working within this
    config_dir: Path = Field(default_factory=default_config_dir)  # where `ascl serve` tells local clients its token
    oidc_issuer: str | None = None  # accept JWTs of this identity provider besides API tokens
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None  # default: from the issuer's discovery document
    oidc_subject_claim: str = "sub"
    oidc_roles_claim: str = "roles"
    oidc_groups_claim: str = "groups"

    @field_validator("checkpoint_uri")
    @classmethod
    def _file_uri(cls, value: str | None) -> str | None:
        if value is not None:
            _checkpoint_path(value)  # a scheme workers cannot open stops the service at start
        return value

    @field_validator("spec_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, float]) -> dict[str, float]:
        SpecLimits.of(value)  # an unknown field or a bad maximum stops the service at start
        return value

    @property
    def standard_eval(self) -> StandardEval:
        return StandardEval(
            pgd_steps=self.auto_eval_pgd_steps, autoattack=self.auto_eval_autoattack, examples=self.auto_eval_examples
        )

    @property
    def spec_limits_checker(self) -> SpecLimits:
        return SpecLimits.of(self.spec_limits)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'jobs.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> str:
        return (self.data_dir / "mlartifacts").resolve().as_uri()

    @property
    def checkpoint_root(self) -> Path:
        if self.checkpoint_uri is None:
            return (self.data_dir / "checkpoints").resolve()
        return _checkpoint_path(self.checkpoint_uri)

    @property
    def scheduling_policy(self) -> Policy:
        return Policy(
            half_life_s=self.fair_share_half_life_s,
            cpu_weight=self.fair_share_cpu_weight,
            aging_s=self.aging_s,
            aging_max=self.aging_max,
            reserve_after_s=self.reserve_after_s,
        )

    @property
    def admin_token_file(self) -> Path:
        return (self.data_dir / "admin-token").resolve()

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{host_and_port(self.host, self.port)}"


def host_and_port(host: str, port: int) -> str:
    """'host:port' as URLs write it: an IPv6 address is bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _checkpoint_path(uri: str) -> Path:
    """The local path of a checkpoint URI: workers read and write checkpoints as files, so shared
    storage is mounted at the same path on every node and named by that path."""
    parsed = urlsplit(uri)
    if parsed.scheme in ("", "file") and parsed.netloc in ("", "localhost"):
        path = Path(unquote(parsed.path))
        if path.is_absolute():
            return path
    raise ValueError(
        f"checkpoint_uri {uri[:200]!r}: give an absolute path or a file:// URI of storage that every Ray "
        "node mounts at that path (e.g. file:///mnt/ascl/checkpoints on NFS)"
    )
