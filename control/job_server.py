"""The reads of Ray's job server that API requests make (an attempt's log, readiness): over HTTP
with a deadline, and only a few at once. Ray's SDK makes these calls without a timeout, so a job
server that accepts connections and never answers held each caller's thread for ever: forty log
streams or unauthenticated /readyz probes took every thread that the API's routes and the running
jobs' heartbeats share."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import quote

import httpx
from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0
CONCURRENT_LOG_READS = 4  # beyond these, a log read answers "nothing new" at once
READY_TTL_S = 2.0  # probes more frequent than this share one answer


class JobServerReads:
    def __init__(self, url: str, *, timeout_s: float = READ_TIMEOUT_S, concurrent: int = CONCURRENT_LOG_READS) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout_s, headers=get_auth_headers_if_auth_enabled({}))
        self._log_reads = threading.BoundedSemaphore(concurrent)
        self._checking = threading.Lock()  # one readiness check at a time; the others get its answer
        self._ready = (float("-inf"), False)

    def log_for_request(self, submission_id: str) -> str | None:
        """`log`, or None at once when as many requests are already reading logs as may."""
        if not self._log_reads.acquire(blocking=False):
            return None
        try:
            return self.log(submission_id)
        finally:
            self._log_reads.release()

    def log(self, submission_id: str) -> str | None:
        """The attempt's whole log; None when the job server has no record of it or does not
        answer in time."""
        response = self._get(f"/api/jobs/{quote(submission_id, safe='')}/logs")
        if response is None or response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:  # not the job server (a proxy's page)
            return None
        logs = body.get("logs") if isinstance(body, dict) else None
        return logs if isinstance(logs, str) else None

    def ready(self) -> bool:
        checked_at, ready = self._ready
        if time.monotonic() - checked_at < READY_TTL_S or not self._checking.acquire(blocking=False):
            return ready
        try:
            response = self._get("/api/version")
            ready = response is not None and response.status_code == 200
            self._ready = (time.monotonic(), ready)
            return ready
        finally:
            self._checking.release()

    def _get(self, path: str) -> httpx.Response | None:
        try:
            return self.http.get(path)
        except httpx.HTTPError as error:
            logger.warning("ray.job_server_unanswered path=%s error=%s", path, str(error)[:200])
            return None
