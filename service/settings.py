"""Process settings from the environment (prefix ASCL_). Experiment knobs never live here."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASCL_")

    data_dir: Path = Path(".ascl")
    database_url: str | None = None  # default: SQLite file in data_dir; production: postgresql+psycopg://...
    ray_address: str | None = None  # default: start a local Ray; else join this cluster (e.g. ray://head:10001)
    ray_dashboard_url: str | None = None  # the cluster's job server (default http://127.0.0.1:8265)
    mlflow_tracking_uri: str | None = None  # default: SQLite store in data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # how workers reach the API; default http://host:port
    poll_interval_s: float = 1.0
    heartbeat_timeout_s: float = 300.0
    heartbeat_interval_s: float = 10.0  # how often workers report
    repair_interval_s: float = 60.0  # how often the reconciler looks for orphans (Ray) and open runs (MLflow)
    claim_lease_s: float = 60.0  # a claim older than this that never reached Ray is requeued
    max_claim_expiries: int = 5  # consecutive claims that never reached Ray before the job fails
    ray_job_retention_s: float = 3600.0  # an ended attempt's Ray job is deleted after this (its log tail is kept)
    worker_python: str = sys.executable  # the interpreter Ray jobs run the worker entrypoint with
    dispatcher: bool = True  # run the dispatcher/monitor inside the API process (embedded mode)
    local_ray_num_cpus: int | None = None
    local_ray_num_gpus: int | None = None

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
        return (self.data_dir / "checkpoints").resolve()

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
