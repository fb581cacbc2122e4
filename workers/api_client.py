"""The worker's view of the API: its attempt's spec, heartbeats and the final result, all fenced
by the attempt's token. Transient network errors are retried; a 409 means 'superseded: stop'."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class Superseded(Exception):
    """The API no longer accepts this attempt (a newer attempt exists, or the job ended)."""


@dataclass(frozen=True, slots=True)
class AttemptIdentity:
    api_url: str
    job_id: str
    attempt: int
    token: str


class ApiClient:
    def __init__(self, identity: AttemptIdentity, *, retries: int = 5, timeout_s: float = 10.0) -> None:
        self.identity = identity
        self.retries = retries
        self.http = httpx.Client(
            base_url=f"{identity.api_url}/api/v1/internal/jobs/{identity.job_id}", timeout=timeout_s
        )

    def spec(self) -> dict[str, Any]:
        return self._call("GET", "/spec", params={"attempt": self.identity.attempt, "token": self.identity.token})

    def heartbeat(self, *, progress: dict[str, Any] | None = None, epoch_metrics: dict[str, Any] | None = None) -> str:
        body = {
            "attempt": self.identity.attempt,
            "token": self.identity.token,
            "progress": progress,
            "epoch_metrics": epoch_metrics,
        }
        return str(self._call("POST", "/heartbeat", json=body)["action"])

    def result(
        self,
        *,
        succeeded: bool,
        result: dict[str, Any] | None = None,
        error_class: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self._call(
            "POST",
            "/result",
            json={
                "attempt": self.identity.attempt,
                "token": self.identity.token,
                "succeeded": succeeded,
                "result": result,
                "error_class": error_class,
                "error_message": error_message,
            },
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(self.retries):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                logger.warning("api.unreachable path=%s try=%d error=%s", path, attempt + 1, error)
                time.sleep(min(2**attempt, 30))
                continue
            if response.status_code == 409:
                raise Superseded(response.json().get("detail", "superseded"))
            if response.status_code >= 500:
                time.sleep(min(2**attempt, 30))
                continue
            response.raise_for_status()
            return dict(response.json())
        raise ConnectionError(f"the API at {self.identity.api_url} did not answer {method} {path}")
