"""The seams between the control plane and the outside: what it needs from the cluster (Ray) and
the tracking server (MLflow), as protocols, and its settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from service.settings import ServiceSettings


class Cluster(Protocol):
    def available(self) -> dict[str, float]: ...
    def total(self) -> dict[str, float]: ...
    def submit(
        self,
        submission_id: str,
        *,
        entrypoint: str,
        env: dict[str, str],
        resources: dict[str, Any],
        metadata: dict[str, str],
    ) -> str: ...
    def status(self, submission_id: str) -> str | None: ...
    def details(self, submission_id: str) -> dict[str, Any]: ...
    def stop(self, submission_id: str) -> None: ...
    def delete(self, submission_id: str) -> None: ...
    def logs(self, submission_id: str) -> str | None: ...
    def list_ours(self) -> list[tuple[str, str]]: ...


class Tracking(Protocol):
    tracking_uri: str

    def ensure_run(self, *, experiment: str, job_id: str, run_name: str, tags: dict[str, str]) -> tuple[str, str]: ...
    def finish_run(self, run_id: str, status: str) -> None: ...
    def log_text(self, run_id: str, text: str, path: str) -> None: ...
    def open_runs(self) -> list[tuple[str, str]]: ...
    def register(self, *, model_uri: str, name: str, job_id: str, tags: dict[str, str]) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    api_url: str
    worker_python: str
    checkpoint_root: Path
    name: str = "dispatcher"
    claim_lease_s: float = 60.0
    max_claim_expiries: int = 5
    ray_job_retention_s: float = 3600.0
    heartbeat_timeout_s: float = 300.0
    heartbeat_interval_s: float = 10.0
    repair_interval_s: float = 60.0  # how often to look for orphaned Ray executions and open MLflow runs
    window: int = 50

    @classmethod
    def from_service(cls, settings: ServiceSettings) -> DispatchSettings:
        return cls(
            api_url=settings.api_url,
            worker_python=settings.worker_python,
            checkpoint_root=settings.checkpoint_root,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            claim_lease_s=settings.claim_lease_s,
            max_claim_expiries=settings.max_claim_expiries,
            ray_job_retention_s=settings.ray_job_retention_s,
            repair_interval_s=settings.repair_interval_s,
        )
