"""Job logs: the current attempt's log from Ray while Ray has it, else the tail kept when it ended;
and a server-sent-events stream of it. The stream is async: a quiet job holds no thread of the pool
that heartbeats and every synchronous route share, only a coroutine, and it is bounded in poll
interval, lifetime and number (per user and in total)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from service.api.auth import CurrentUser, release_request_slot
from service.api.deps import Sessions
from service.api.limits import Slots
from service.api.params import JobId
from service.auth.principal import require_details
from service.cluster import ClusterView
from service.db import read_scope
from service.db.models import Attempt
from service.jobs import attempts, store
from service.jobs.status import is_terminal

router = APIRouter()


def _log_text(cluster: ClusterView, attempt: Attempt | None) -> str:
    """The attempt's log from Ray while Ray has it; after that, the tail kept when it ended."""
    if attempt is None:
        return ""
    live = cluster.logs(attempt.ray_submission_id)
    return live if live is not None else (attempt.log_tail or "")


def _current(sessions: sessionmaker[Session], job_id: str) -> tuple[Attempt | None, str, str]:
    """(the current attempt, the job's state, its owner)"""
    with read_scope(sessions) as session:
        job = store.get_job(session, job_id)
        return attempts.current_attempt(session, job), job.status, job.owner


def _resume_point(last_event_id: str) -> tuple[int, int] | None:
    """(attempt, characters of its log already sent) from a reconnecting client's Last-Event-ID,
    which is the `id` of the last line it received; None for anything else."""
    match = re.fullmatch(r"([0-9]{1,9}):([0-9]{1,12})", last_event_id)
    return (int(match[1]), int(match[2])) if match else None


# text on success; errors keep their JSON body (a route-wide text/plain class would document them as text)
TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
EVENTS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/jobs/{job_id}/logs", response_class=Response, responses=TEXT)
def job_logs(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> Response:
    attempt, _, owner = _current(sessions, job_id)
    require_details(principal, owner, shared=request.app.state.settings.share_job_details, what=f"job {job_id}")
    return PlainTextResponse(_log_text(request.app.state.cluster, attempt))  # read outside the transaction


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
    slots: Slots = state.stream_slots
    user = principal.subject
    slots.take(user)
    release_request_slot(request)  # the stream is bounded by its own slot from here on
    deadline = time.monotonic() + state.settings.log_stream_max_s

    resume = _resume_point(request.headers.get("last-event-id", ""))

    async def chunks() -> AsyncIterator[str]:
        try:
            (shown_attempt, sent) = resume or (None, 0)
            while True:
                attempt, status, _ = await run_in_threadpool(_current, sessions, job_id)
                text = await run_in_threadpool(_log_text, state.cluster, attempt)
                number = attempt.attempt_no if attempt is not None else None
                if number != shown_attempt:  # a retry's log starts from its beginning
                    if shown_attempt is not None:
                        yield f"data: [attempt {number}]\n\n"
                    sent, shown_attempt = 0, number
                finished = is_terminal(status)
                whole = text if finished else text[: text.rfind("\n") + 1]  # a line being written waits for its end
                for line in whole[sent:].splitlines(keepends=True):  # a read that came back short sends nothing
                    sent += len(line)
                    yield f"id: {number}:{sent}\ndata: {(line.splitlines() or [''])[0]}\n\n"
                if finished or time.monotonic() > deadline or await request.is_disconnected():
                    yield f"event: end\ndata: {status}\n\n"
                    return
                await asyncio.sleep(poll_s)
        finally:
            slots.give_back(user)

    return StreamingResponse(chunks(), media_type="text/event-stream")
