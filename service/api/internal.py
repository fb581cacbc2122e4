"""Worker-facing routes. Every call carries the attempt number and its fencing token; a superseded
attempt gets 409 and is told to stop, so a zombie can never report over a retry."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import Sessions
from service.api.schemas import AttemptResult, Heartbeat
from service.db import session_scope
from service.jobs import store

router = APIRouter(prefix="/internal")


@router.get("/jobs/{job_id}/spec")
def attempt_spec(job_id: str, attempt: int, token: str, sessions: Sessions) -> dict[str, object]:
    with session_scope(sessions) as session:
        job, current = store.fenced_attempt(session, job_id, attempt, token)
        return {
            "kind": job.kind,
            "spec": job.spec,
            "target": job.target,
            "checkpoint_dir": current.checkpoint_dir,
            "resume_checkpoint": job.resume_checkpoint,
            "mlflow_run_id": job.mlflow_run_id,
            "name": job.name,
        }


@router.post("/jobs/{job_id}/heartbeat")
def heartbeat(job_id: str, body: Heartbeat, sessions: Sessions) -> dict[str, str]:
    with session_scope(sessions) as session:
        action = store.record_heartbeat(
            session, job_id, body.attempt, body.token, progress=body.progress, epoch_metrics=body.epoch_metrics
        )
        return {"action": action}


@router.post("/jobs/{job_id}/result")
def attempt_result(job_id: str, body: AttemptResult, sessions: Sessions) -> dict[str, str]:
    """The attempt's outcome; the dispatcher makes the state transition once Ray reports the end."""
    with session_scope(sessions) as session:
        job, attempt = store.fenced_attempt(session, job_id, body.attempt, body.token)
        if body.succeeded:
            job.result = body.result
        else:
            attempt.failure_class = body.error_class
            attempt.error_message = (body.error_message or "")[-4000:]
        return {"action": "stop"}
