"""Job logs: the current attempt's log from Ray while Ray has it, else the tail kept when it ended;
and a server-sent-events stream of it. The stream is async: a quiet job holds no thread of the pool
that heartbeats and every synchronous route share, only a coroutine, and it is bounded in poll
interval, lifetime and number (per user and in total)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from service.api.auth import CurrentUser, release_request_slot
from service.api.deps import Sessions
from service.api.limits import Slots
from service.api.log_cursor import LogCursor, Source
from service.api.params import JobId
from service.auth.principal import require_details
from service.cluster import ClusterView
from service.db import read_scope
from service.db.models import Attempt
from service.jobs import attempts, store
from service.jobs.status import is_terminal

router = APIRouter()
TAIL_WAIT_S = 10.0


def _log_text(cluster: ClusterView, attempt: Attempt | None, *, tail_only: bool = False) -> tuple[str, Source | None]:
    """The attempt's log and where it came from: Ray's while Ray has it (unless `tail_only`), else the
    tail kept when it ended; no source while neither can be read (Ray busy or away, the tail not yet
    kept)."""
    if attempt is None:
        return "", "tail"  # no attempt: no log will come
    live = None if tail_only else cluster.logs(attempt.ray_submission_id)
    if live is not None:
        return live, "ray"
    return (attempt.log_tail, "tail") if attempt.log_tail is not None else ("", None)


def _current(sessions: sessionmaker[Session], job_id: str) -> tuple[Attempt | None, str, str]:
    """(the current attempt, the job's state, its owner)"""
    with read_scope(sessions) as session:
        job = store.get_job(session, job_id)
        return attempts.current_attempt(session, job), job.status, job.owner


# text on success; errors keep their JSON body (a route-wide text/plain class would document them as text)
TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
EVENTS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/jobs/{job_id}/logs", response_class=Response, responses=TEXT)
def job_logs(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> Response:
    attempt, _, owner = _current(sessions, job_id)
    require_details(principal, owner, shared=request.app.state.settings.share_job_details, what=f"job {job_id}")
    return PlainTextResponse(_log_text(request.app.state.cluster, attempt)[0])  # read outside the transaction


@router.get("/jobs/{job_id}/logs/stream", response_class=Response, responses=EVENTS)
async def stream_logs(
    job_id: JobId,
    request: Request,
    sessions: Sessions,
    principal: CurrentUser,
    poll_s: Annotated[float, Query(ge=0.2, le=10.0, allow_inf_nan=False)] = 1.0,
) -> StreamingResponse:
    """Server-sent events: each new line of the current attempt's log, until the job ends or the
    stream's lifetime (log_stream_max_s) is over; then an `end` event with the job's state. Each
    line's event `id` is its place in the log: a client that reconnects with it as Last-Event-ID
    (as browsers' EventSource and `ascl jobs logs --follow` do) continues where it was."""
    _, _, owner = await run_in_threadpool(_current, sessions, job_id)  # 404 before the stream opens
    state = request.app.state
    require_details(principal, owner, shared=state.settings.share_job_details, what=f"job {job_id}")
    cursor = LogCursor.resumed(request.headers.get("last-event-id", ""))
    deadline = time.monotonic() + state.settings.log_stream_max_s

    async def chunks() -> AsyncIterator[str]:
        finished_at = None
        while True:
            attempt, status, _ = await run_in_threadpool(_current, sessions, job_id)
            number = attempt.attempt_no if attempt is not None else None
            tail_only = cursor.source == "tail" and cursor.attempt == number  # the tail, once read, stays
            text, source = await run_in_threadpool(_log_text, state.cluster, attempt, tail_only=tail_only)
            finished = is_terminal(status)
            for event in cursor.events(number, text, source, finished=finished):
                yield event
            finished_at = finished_at or (time.monotonic() if finished else None)
            # an ended attempt's tail is kept just after the job's end: wait a little for it
            waiting = finished_at is not None and source is None and time.monotonic() - finished_at < TAIL_WAIT_S
            if (finished and not waiting) or time.monotonic() > deadline or await request.is_disconnected():
                yield f"event: end\ndata: {status}\n\n"
                return
            await asyncio.sleep(poll_s)

    slots: Slots = state.stream_slots
    user = principal.subject
    slots.take(user)  # nothing below raises before the response holds it
    release_request_slot(request)  # the stream is bounded by its own slot from here on
    return _HeldStream(chunks(), release=lambda: slots.give_back(user))


class _HeldStream(StreamingResponse):
    """An event stream that holds a slot until the response has ended, however it ends: sent whole,
    cut off, or never begun. Given back in the body's own `finally`, it leaked when a server (ASGI
    spec 2.4) never iterated a body whose first send failed."""

    def __init__(self, body: AsyncIterator[str], *, release: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream")
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
