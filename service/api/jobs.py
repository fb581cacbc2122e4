"""Public job routes: thin — parse, call the store, shape the answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session

from ascl.presets import PRESETS
from service.api.deps import Sessions
from service.api.schemas import ErrorBody, EventRead, JobCreate, JobPage, JobRead, RetryRequest
from service.cluster import ClusterView
from service.db import session_scope
from service.db.models import Attempt, Job
from service.jobs import store
from service.jobs.errors import InvalidSpec, InvalidTransition
from service.jobs.spec import resolve_experiment
from service.jobs.status import TERMINAL, JobStatus

# the one error body shape
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 409, 422)}
router = APIRouter(responses=ERRORS)

Owner = Annotated[str, Header(alias="X-User", max_length=100)]


@router.post("/jobs", status_code=201, response_model=JobRead, responses={200: {"model": JobRead}})
async def submit_job(
    body: JobCreate,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    owner: Owner = "anonymous",
    dry_run: bool = False,
) -> JobRead:
    """The hot path: submissions share transactions through the app's group commit."""

    def submit(session: Session) -> tuple[JobRead, bool]:
        new = build_new_job(body, request, session, owner)
        if dry_run:
            return JobRead.of(_unsaved(new), pending_reason="DRY_RUN"), False
        job, created = store.add_job(
            session, new, idempotency_key=idempotency_key, body_hash=store.request_hash(body.model_dump())
        )
        return read(session, job, request, with_position=False), created

    outcome: tuple[JobRead, bool] = await request.app.state.submissions.run(submit)
    job, created = outcome
    if not created:
        response.status_code = 200
    else:
        request.app.state.wake_dispatcher()
    return job


def build_new_job(body: JobCreate, request: Request, session: Session, owner: str) -> store.NewJob:
    _check_feasible(body, request)
    target = None
    if body.kind == "eval":
        if body.model is None:
            raise InvalidSpec(
                "model", "an eval job needs 'model' (models:/NAME/VERSION, models:/NAME@ALIAS or a job id)"
            )
        target, base = _eval_target(session, body.model)
        config = resolve_experiment(preset=None, experiment=base, overrides=body.overrides)  # validates overrides
        target["overrides"] = body.overrides
    else:
        if body.model is not None:
            raise InvalidSpec("model", "only eval jobs take 'model'")
        config = resolve_experiment(preset=body.preset, experiment=body.experiment, overrides=body.overrides)
    name = body.name or (f"eval {body.model}" if body.kind == "eval" else config.name)
    model_name = body.model_name or (f"ascl-{config.name}" if body.kind == "train" else None)
    return store.NewJob(
        kind=body.kind,
        name=name,
        owner=owner,
        queue=body.queue,
        priority=body.priority,
        tags=body.tags,
        spec=config.to_dict(),
        target=target,
        resources=body.resources.model_dump(),
        max_runtime_s=body.max_runtime_s,
        max_infra_retries=body.max_infra_retries,
        model_name=model_name,
    )


def _eval_target(session: Session, model: str) -> tuple[dict[str, object], dict[str, object]]:
    """An MLflow model URI or a finished train job → (target, the training spec to evaluate with)."""
    if model.startswith("models:/"):
        rest = model.removeprefix("models:/")
        if not rest or ("/" not in rest and "@" not in rest):
            raise InvalidSpec("model", f"expected models:/NAME/VERSION or models:/NAME@ALIAS (got {model!r})")
        return {"model_uri": model}, {}
    source = store.get_job(session, model)
    if source.kind != "train" or source.status != JobStatus.SUCCEEDED or not source.registered_model_version:
        raise InvalidSpec("model", f"job {model} is {source.status} and has no registered model version")
    return (
        {"model_uri": f"models:/{source.model_name}/{source.registered_model_version}", "job_id": source.id},
        source.spec,
    )


def _check_feasible(body: JobCreate, request: Request) -> None:
    largest = request.app.state.cluster.largest_node()
    if largest is None or body.force_queue:
        return
    for field, key, asked in (("gpus", "GPU", body.resources.gpus), ("cpus", "CPU", body.resources.cpus)):
        if asked > largest.get(key, 0.0):
            raise InvalidSpec(
                f"resources.{field}",
                f"{asked:g} requested but the largest node has "
                f"{largest.get(key, 0.0):g}; set force_queue=true to queue it anyway",
            )


def _unsaved(new: store.NewJob) -> Job:
    return Job(
        id="dry-run", status="DRY_RUN", created_at=store.now(), attempts_made=0, metrics_history=[], **asdict(new)
    )


def read(session: Session, job: Job, request: Request, *, with_position: bool = True) -> JobRead:
    """The job as the API shows it. The queue position is a COUNT over the queue, so submissions
    skip it (their cost must not grow with the queue); GET /jobs/{id} shows it."""
    position = store.queue_position(session, job) if with_position else None
    ui = request.app.state.mlflow_ui_url
    url = (
        f"{ui}/#/experiments/{job.mlflow_experiment_id}/runs/{job.mlflow_run_id}" if ui and job.mlflow_run_id else None
    )
    return JobRead.of(
        job,
        queue_position=position,
        pending_reason="PRIORITY" if position and position > 1 else ("RESOURCES" if position == 1 else None),
        mlflow_run_url=url,
    )


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    sessions: Sessions,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    kind: str | None = None,
    queue: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> JobPage:
    with session_scope(sessions) as session:
        filters = store.JobFilter(
            statuses=[s.value for s in status] if status else None,
            kind=kind,
            queue=queue,
            tag=tag,
            owner=owner,
            created_after=created_after,
            created_before=created_before,
        )
        try:
            jobs, next_cursor = store.list_jobs(session, filters, limit=limit, cursor=cursor)
        except ValueError as error:
            raise InvalidSpec("cursor", "not a cursor returned by this API") from error
        return JobPage(items=[JobRead.of(job) for job in jobs], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: str, request: Request, sessions: Sessions) -> JobRead:
    with session_scope(sessions) as session:
        return read(session, store.get_job(session, job_id), request)


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: str, request: Request, sessions: Sessions, owner: Owner = "anonymous") -> JobRead:
    with session_scope(sessions) as session:
        job = store.cancel(session, job_id, actor=owner, reason="cancelled by user")
        request.app.state.wake_dispatcher()
        return read(session, job, request)


@router.post("/jobs/{job_id}/retry", status_code=201, response_model=JobRead)
def retry_job(
    job_id: str, body: RetryRequest, request: Request, sessions: Sessions, owner: Owner = "anonymous"
) -> JobRead:
    """A new job from the same spec (with overrides), optionally resuming from the last checkpoint."""
    with session_scope(sessions) as session:
        original = store.get_job(session, job_id)
        if JobStatus(original.status) not in TERMINAL:
            raise InvalidTransition(f"job {job_id} is {original.status}; only finished jobs can be retried")
        config = resolve_experiment(preset=None, experiment=original.spec, overrides=body.overrides)
        attempt = store.current_attempt(session, original)
        resume = f"{attempt.checkpoint_dir}/last.pt" if body.resume and attempt is not None else None
        new = store.NewJob(
            kind=original.kind,
            name=original.name,
            owner=owner,
            queue=original.queue,
            priority=original.priority,
            tags=original.tags,
            spec=config.to_dict(),
            target=original.target,
            resources=original.resources,
            max_runtime_s=original.max_runtime_s,
            max_infra_retries=original.max_infra_retries,
            model_name=original.model_name,
            experiment=original.experiment,
            retried_from=original.id,
            resume_checkpoint=resume,
        )
        job, _ = store.add_job(session, new, idempotency_key=None, body_hash=store.request_hash(body.model_dump()))
        request.app.state.wake_dispatcher()
        return read(session, job, request, with_position=False)


@router.get("/jobs/{job_id}/events", response_model=list[EventRead])
def job_events(job_id: str, sessions: Sessions) -> list[EventRead]:
    with session_scope(sessions) as session:
        return [EventRead.of(event) for event in store.events(session, job_id)]


@router.get("/jobs/{job_id}/metrics")
def job_metrics(job_id: str, sessions: Sessions) -> dict[str, object]:
    with session_scope(sessions) as session:
        job = store.get_job(session, job_id)
        return {"job_id": job.id, "epochs": job.metrics_history or []}


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(job_id: str, request: Request, sessions: Sessions) -> str:
    with session_scope(sessions) as session:
        attempt = store.current_attempt(session, store.get_job(session, job_id))
    return _log_text(request.app.state.cluster, attempt)  # outside the transaction


def _log_text(cluster: ClusterView, attempt: Attempt | None) -> str:
    """The attempt's log from Ray while Ray has it; after that, the tail kept when it ended."""
    if attempt is None:
        return ""
    live = cluster.logs(attempt.ray_submission_id)
    return live if live is not None else (attempt.log_tail or "")


@router.get("/jobs/{job_id}/logs/stream")
def stream_logs(job_id: str, request: Request, sessions: Sessions, poll_s: float = 1.0) -> StreamingResponse:
    """Server-sent events: each new chunk of the current attempt's log, until the job ends."""
    with session_scope(sessions) as session:
        store.get_job(session, job_id)  # 404 before the stream opens
    cluster = request.app.state.cluster

    def chunks() -> Iterator[str]:
        sent = 0
        while True:
            with session_scope(sessions) as session:
                job = store.get_job(session, job_id)
                attempt = store.current_attempt(session, job)
                status = job.status
            text = _log_text(cluster, attempt)
            for line in text[sent:].splitlines():
                yield f"data: {line}\n\n"
            sent = len(text)
            if JobStatus(status) in TERMINAL:
                yield f"event: end\ndata: {status}\n\n"
                return
            time.sleep(poll_s)

    return StreamingResponse(chunks(), media_type="text/event-stream")


@router.get("/presets")
def presets() -> dict[str, object]:
    return {name: config.to_dict() for name, config in sorted(PRESETS.items())}
