"""Worker-facing routes. Every call names its attempt and carries the attempt's fencing token in the
`X-Attempt-Token` header (never in the URL, which access logs keep); a superseded attempt gets 409
and is told to stop, so a zombie can never report over a retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from service.api.deps import Sessions
from service.api.params import JobId
from service.contracts import AttemptOutcome, AttemptSpec, Heartbeat, HeartbeatReply
from service.db import session_scope
from service.jobs import attempts

router = APIRouter(prefix="/internal")

AttemptToken = Annotated[str, Header(alias="X-Attempt-Token", max_length=128, description="the fencing token")]


@router.get("/jobs/{job_id}/attempts/{attempt}/spec", response_model=AttemptSpec)
def attempt_spec(job_id: JobId, attempt: int, token: AttemptToken, sessions: Sessions) -> AttemptSpec:
    with session_scope(sessions) as session:
        return attempts.attempt_spec(session, job_id, attempt, token)


@router.post("/jobs/{job_id}/attempts/{attempt}/heartbeat", response_model=HeartbeatReply)
def heartbeat(job_id: JobId, attempt: int, body: Heartbeat, token: AttemptToken, sessions: Sessions) -> HeartbeatReply:
    with session_scope(sessions) as session:
        return HeartbeatReply(action=attempts.record_heartbeat(session, job_id, attempt, token, body))


@router.post("/jobs/{job_id}/attempts/{attempt}/outcome", response_model=HeartbeatReply)
def attempt_outcome(
    job_id: JobId, attempt: int, body: AttemptOutcome, token: AttemptToken, sessions: Sessions
) -> HeartbeatReply:
    """The attempt's outcome; the control plane makes the state transition once Ray reports the end."""
    with session_scope(sessions) as session:
        attempts.record_outcome(session, job_id, attempt, token, body)
        return HeartbeatReply(action="stop")
