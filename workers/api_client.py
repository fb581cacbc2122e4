"""The worker's view of the API: its attempt's spec, heartbeats and the final outcome, all fenced
by the attempt's token (sent in a header). Transient network errors are retried; a 409 means
'superseded: stop'."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TypeVar

import httpx
from pydantic import BaseModel

from service.contracts import (
    ATTEMPT_TOKEN_HEADER,
    AttemptOutcome,
    AttemptSpec,
    Heartbeat,
    HeartbeatReply,
    finite_only,
)

logger = logging.getLogger(__name__)
Reply = TypeVar("Reply", bound=BaseModel)


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
            base_url=f"{identity.api_url}/api/v1/internal/jobs/{identity.job_id}/attempts/{identity.attempt}",
            headers={ATTEMPT_TOKEN_HEADER: identity.token},
            timeout=timeout_s,
        )

    def spec(self) -> AttemptSpec:
        return self._call("GET", "/spec", AttemptSpec)

    def heartbeat(self, beat: Heartbeat) -> str:
        return self._call("POST", "/heartbeat", HeartbeatReply, body=beat).action

    def outcome(self, outcome: AttemptOutcome) -> None:
        self._call("POST", "/outcome", HeartbeatReply, body=outcome)

    def _call(self, method: str, path: str, reply: type[Reply], *, body: BaseModel | None = None) -> Reply:
        content = json.dumps(finite_only(body.model_dump(mode="json")), allow_nan=False) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        for attempt in range(self.retries):
            try:
                response = self.http.request(method, path, content=content, headers=headers)
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
            return reply.model_validate_json(response.content)
        raise ConnectionError(f"the API at {self.identity.api_url} did not answer {method} {path}")
