"""A small Python client for the REST API (the `ascl jobs` commands use it). It authenticates with a
token: the one given, else $ASCL_TOKEN, else the admin token a local `ascl serve` recorded for the
URL (service/credentials.py)."""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from service.contracts import ID_PREFIX_PATTERN
from service.credentials import find_token
from service.jobs.status import is_terminal


class ApiUnreachable(Exception):
    """No API answers at the URL."""

    def __init__(self, url: str, error: Exception) -> None:
        self.url = url
        super().__init__(
            f"no ASCL API answers at {url} ({type(error).__name__}); start one with `ascl serve`, "
            "or point --api / ASCL_API at a running one"
        )


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        field = f" [{body['field']}]" if body.get("field") else ""
        super().__init__(f"HTTP {status} {body.get('error', '')}{field}: {body.get('detail', body)}")


WHOLE_ID_LENGTH = 32  # ids this service makes: uuid4().hex


class ShortIdError(ApiError):
    """A shortened id (lists show the first 8 characters) that starts no visible id, or several."""

    def __init__(self, message: str, *, status: int) -> None:
        Exception.__init__(self, message)
        self.status, self.body = status, {"detail": message}


class AsclClient:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        token = token or find_token(self.base_url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def create_sweep(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        return self._json("POST", "/api/v1/sweeps", json=body, params={"dry_run": dry_run})

    def sweeps(self, **filters: Any) -> dict[str, Any]:
        return self._json("GET", "/api/v1/sweeps", params={k: v for k, v in filters.items() if v is not None})

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/sweeps/{sweep_id}")

    def sweep_trials(self, sweep_id: str) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = self._send("GET", f"/api/v1/sweeps/{sweep_id}/trials").json()
        return found

    def change_sweep(self, sweep_id: str, **limits: int) -> dict[str, Any]:
        return self._json("PATCH", f"/api/v1/sweeps/{sweep_id}", json=limits)

    def cancel_sweep(self, sweep_id: str, *, running: str = "stop") -> dict[str, Any]:
        return self._json("POST", f"/api/v1/sweeps/{sweep_id}/cancel", json={"running": running})

    def models(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/models")

    def model(self, name: str, *, sort: str = "version", order: str = "desc", limit: int = 200) -> dict[str, Any]:
        params: dict[str, Any] = {"sort": sort, "order": order, "limit": limit}
        return self._json("GET", f"/api/v1/models/{quote(name, safe='')}", params=params)

    def promote(self, name: str, version: str, *, max_clean_drop: float = 0.01) -> dict[str, Any]:
        body = {"version": version, "max_clean_drop": max_clean_drop}
        return self._json("POST", f"/api/v1/models/{quote(name, safe='')}/promote", json=body)

    def comparison_png(self, name: str) -> bytes:
        return self._send("GET", f"/api/v1/models/{quote(name, safe='')}/comparison.png").content

    def hold(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{job_id}/hold")

    def release(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{job_id}/release")

    def queues(self) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = self._send("GET", "/api/v1/queues").json()
        return found

    def put_queue(self, name: str, limits: dict[str, Any]) -> dict[str, Any]:
        return self._json("PUT", f"/api/v1/queues/{name}", json=limits)

    def whoami(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/whoami")

    def create_token(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/api/v1/tokens", json=body)

    def tokens(self, subject: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"subject": subject} if subject else {}
        found: builtins.list[dict[str, Any]] = self._send("GET", "/api/v1/tokens", params=params).json()
        return found

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/v1/tokens/{token_id}")

    def submit(
        self, body: dict[str, Any], *, idempotency_key: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/api/v1/jobs", json=body, headers=headers, params={"dry_run": dry_run})

    def full_id(self, given: str, *, sweep: bool = False) -> str:
        """The whole id of the one job (or sweep) whose id starts with `given`, as lists show their
        first 8 characters; a whole id, or anything that is no such start, as it is."""
        if len(given) == WHOLE_ID_LENGTH or not re.fullmatch(ID_PREFIX_PATTERN, given):
            return given
        found = (self.sweeps if sweep else self.list)(id_prefix=given, limit=2)["items"]
        what = "sweep" if sweep else "job"
        if len(found) == 1:
            return str(found[0]["id"])
        if found:
            raise ShortIdError(f"more than one {what} id starts with {given}: give more of it", status=409)
        raise ShortIdError(f"no {what} id starts with {given}", status=404)

    def get(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{job_id}")

    def list(self, **filters: Any) -> dict[str, Any]:
        return self._json("GET", "/api/v1/jobs", params={k: v for k, v in filters.items() if v is not None})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{job_id}/cancel")

    def retry(self, job_id: str, *, overrides: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
        return self._json("POST", f"/api/v1/jobs/{job_id}/retry", json={"overrides": overrides or {}, "resume": resume})

    def events(self, job_id: str) -> builtins.list[dict[str, Any]]:  # `list` is a method here
        events: builtins.list[dict[str, Any]] = self._send("GET", f"/api/v1/jobs/{job_id}/events").json()
        return events

    def metrics(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/jobs/{job_id}/metrics")

    def logs(self, job_id: str) -> str:
        return self._send("GET", f"/api/v1/jobs/{job_id}/logs").text

    def follow_logs(self, job_id: str) -> Iterator[str]:
        """The job's log lines as they come, until the job ends: a stream the API ends before that
        (streams have a lifetime) is reopened where it stopped."""
        last_id = ""
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self.http.stream(
                    "GET", f"/api/v1/jobs/{quote(job_id, safe='')}/logs/stream", headers=headers, timeout=None
                ) as response:
                    self._raise(response)
                    for kind, event_id, data in _events(response.iter_lines()):
                        if kind == "end":
                            if is_terminal(data):
                                return
                            break  # the stream's lifetime is over, not the job
                        last_id = event_id or last_id
                        yield data
            except httpx.ConnectError as error:
                raise ApiUnreachable(self.base_url, error) from None
            except (httpx.ReadError, httpx.RemoteProtocolError):  # the connection dropped: reopen where it was
                pass
            time.sleep(1.0)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 600,
        poll_s: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The job once it has ended; `on_update` sees it whenever its state or progress changed."""
        deadline = time.monotonic() + timeout_s
        seen: tuple[Any, ...] | None = None
        while True:
            job = self.get(job_id)
            if on_update is not None and (job["status"], job.get("progress")) != seen:
                seen = (job["status"], job.get("progress"))
                on_update(job)
            if is_terminal(job["status"]):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self._send(method, path, **kwargs).json()
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            raise ApiUnreachable(self.base_url, error) from None
        self._raise(response)
        return response

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            raise ApiError(response.status_code, body)


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str, str]]:
    """(event type, id, data) of each server-sent event."""
    kind, event_id, data = "message", "", list[str]()
    for line in lines:
        if not line:
            if data:
                yield kind, event_id, "\n".join(data)
            kind, event_id, data = "message", "", []
        elif line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("id:"):
            event_id = line.removeprefix("id:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
