"""Public job routes: thin — authenticate, parse, call the store, shape the answer."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from ascl.presets import PRESETS
from ascl.run_files import LAST
from service.api.auth import CurrentUser
from service.api.deps import Sessions
from service.api.params import JobId
from service.api.schemas import EventRead, JobCreate, JobPage, JobRead, Label, QueueName, RetryRequest, UtcMoment
from service.api.submission import (
    Prepared,
    build_new_job,
    check_queued_limit,
    default_model_name,
    prepare,
    resolve_registered,
    retried_job,
    retried_target,
)
from service.auth import models
from service.auth.principal import USER_PATTERN, Principal, may_read_details, require_details, require_owner
from service.contracts import ID_PREFIX_PATTERN, EvalTarget, JobKind
from service.db import read_scope, session_scope
from service.db.models import Job
from service.jobs import attempts, queueing, store
from service.jobs.errors import InvalidSpec, InvalidTransition
from service.jobs.status import TERMINAL, JobStatus
from service.jobs.store import NewJob
from service.models import evaluation
from service.registry import RegisteredVersion
from service.settings import ServiceSettings

# the one error body shape
router = APIRouter()


@router.post("/jobs", status_code=201, response_model=JobRead, responses={200: {"model": JobRead}})
async def submit_job(
    body: JobCreate,
    request: Request,
    response: Response,
    principal: CurrentUser,
    idempotency_key: Annotated[str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")] = None,
    dry_run: bool = False,
) -> JobRead:
    """The hot path: submissions share transactions through the app's group commit. A registry
    look-up (eval jobs by models:/ URI) and a dataset's file check (with a data root) happen before,
    in the thread pool, outside any transaction."""
    state = request.app.state
    if _inline(body, request, state.settings):
        registered, prepared = None, prepare(body, state.settings)
    else:
        registered, prepared = await run_in_threadpool(_before_transaction, body, state, principal)

    def submit(session: Session) -> tuple[JobRead, bool]:
        check_queued_limit(session, principal.subject, state.settings.max_queued_per_user)
        new = build_new_job(
            body,
            principal=principal,
            session=session,
            registered=registered,
            cluster=state.cluster,
            settings=state.settings,
            prepared=prepared,
        )
        trains_model = new.kind == JobKind.TRAIN and new.model_name is not None
        new_name = trains_model and models.check_writable(
            session, str(new.model_name), principal, group=body.model_group
        )
        if dry_run:
            return JobRead.of(_unsaved(new), pending_reason="DRY_RUN"), False
        key = evaluation.request_key(new)
        cached = key and evaluation.cached_job(session, name=key[0], version=key[1], spec_hash=key[2])
        if cached:  # this very evaluation exists: link to it (200) instead of running it again
            return read(session, cached, request, principal, with_position=False), False
        job, created = store.add_job(session, new, idempotency_key=idempotency_key, body_hash=prepared.body_hash)
        if created and key:
            standard = _standard_hash(session, new, registered, state.settings) == key[2]
            evaluation.remember(
                session, job_id=job.id, name=key[0], version=key[1], spec_hash=key[2], standard=standard
            )
        if created and new_name:
            models.claim(session, str(new.model_name), principal, group=body.model_group)
        if not created:
            return read(session, job, request, principal, with_position=False), False
        queueing.add_dependencies(session, job.id, [(d.job, d.on) for d in body.depends_on])
        parents = [d.job for d in body.depends_on]  # known: no query (and no flush) for a new job
        return read(session, job, request, principal, with_position=False, parents=parents), True

    # lets the batch read what its units will ask in one query each
    hint = {"owner": principal.subject, "queue": body.queue}
    if idempotency_key is not None:
        hint["owner_key"] = store.owner_key(principal.subject, idempotency_key)
    if body.kind == JobKind.TRAIN and prepared.config is not None:
        hint["model_name"] = body.model_name or default_model_name(principal.subject, prepared.config.name)
    outcome: tuple[JobRead, bool] = await state.submissions.run(submit, hint=hint)
    job, created = outcome
    if not created:
        response.status_code = 200
    else:
        state.wake_dispatcher()
    return job


INLINE_BODY_BYTES = 16 * 1024  # a usual submission is a few hundred bytes; a crafted 1 MB one costs ~0.25 s


def _inline(body: JobCreate, request: Request, settings: ServiceSettings) -> bool:
    """Whether the work before the transaction runs on the event loop: a small train job's, which
    touches neither the registry nor the file system (no data root) and costs less CPU than a
    thread-pool hop. A large body goes to the pool: converting it would hold up every request."""
    size = request.headers.get("content-length", "")
    small = size.isdigit() and int(size) <= INLINE_BODY_BYTES
    return small and body.kind == JobKind.TRAIN and settings.data_root is None


def _before_transaction(body: JobCreate, state: Any, principal: Principal) -> tuple[RegisteredVersion | None, Prepared]:
    """The registry look-up (a network call) and the work that needs no database."""

    def may_read(name: str) -> None:
        with read_scope(state.sessions) as session:
            models.require_readable(session, name, principal, shared=state.settings.share_job_details)

    return resolve_registered(body, state.registry, principal, may_read), prepare(body, state.settings)


def _standard_hash(
    session: Session, new: store.NewJob, registered: RegisteredVersion | None, settings: ServiceSettings
) -> str:
    """The hash the standard evaluation of the job's target has: the same request counts as it."""
    target = EvalTarget.model_validate(new.target)
    trained = registered.config if registered is not None else store.get_job(session, str(target.job_id)).spec
    return evaluation.config_hash(evaluation.standard_spec(trained, settings.standard_eval))


def _unsaved(new: store.NewJob) -> Job:
    fields = {name: getattr(new, name) for name in store.NewJob.__dataclass_fields__}
    return Job(id="dry-run", status="DRY_RUN", created_at=store.now(), attempts_made=0, metrics_history=[], **fields)


def read(
    session: Session,
    job: Job,
    request: Request,
    principal: Principal,
    *,
    with_position: bool = True,
    parents: list[str] | None = None,
) -> JobRead:
    """The job as the API shows it, in every route: whole to its owner (or everyone where details are
    shared), a summary to others. A waiting job's place comes from the queue plan, which costs a pass
    over the whole queue (cached for a second), so submissions skip it: their cost must not grow
    with the queue."""
    ui = request.app.state.mlflow_ui_url
    url = (
        f"{ui}/#/experiments/{job.mlflow_experiment_id}/runs/{job.mlflow_run_id}" if ui and job.mlflow_run_id else None
    )
    if parents is None:
        parents = queueing.parents_of(session, [job.id])[job.id]
    extra: dict[str, Any] = {"mlflow_run_url": url, "depends_on": parents}
    if with_position and job.status == JobStatus.QUEUED:
        explanation = request.app.state.queue_view.explain(session, job.id)
        if explanation is not None:
            extra |= {
                "queue_position": explanation.position,
                "pending_reason": explanation.reason.value,
                "estimated_start": explanation.estimated_start,
            }
    if may_read_details(principal, job.owner, shared=request.app.state.settings.share_job_details):
        return JobRead.of(job, **extra)
    return JobRead.summary_of(job, **extra)


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    request: Request,
    sessions: Sessions,
    principal: CurrentUser,
    status: Annotated[list[JobStatus] | None, Query(max_length=len(JobStatus))] = None,
    kind: JobKind | None = None,
    queue: QueueName | None = None,
    tag: Label | None = None,
    owner: Annotated[str | None, Query(max_length=100, pattern=USER_PATTERN)] = None,
    created_after: UtcMoment | None = None,
    created_before: UtcMoment | None = None,
    id_prefix: Annotated[str | None, Query(pattern=ID_PREFIX_PATTERN, description="the start of the id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]+$")] = None,
) -> JobPage:
    with read_scope(sessions) as session:
        filters = store.JobFilter(
            statuses=[s.value for s in status] if status else None,
            kind=kind,
            queue=queue,
            tag=tag,
            owner=owner,
            created_after=created_after,
            created_before=created_before,
            id_prefix=id_prefix,
        )
        try:
            jobs, next_cursor = store.list_jobs(session, filters, limit=limit, cursor=cursor)
        except ValueError as error:
            raise InvalidSpec("cursor", "not a cursor returned by this API") from error
        parents = queueing.parents_of(session, [job.id for job in jobs])
        items = [read(session, job, request, principal, parents=parents[job.id]) for job in jobs]
        return JobPage(items=items, next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> JobRead:
    with read_scope(sessions) as session:
        return read(session, store.get_job(session, job_id), request, principal)


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> JobRead:
    with session_scope(sessions) as session:
        require_owner(principal, store.get_job(session, job_id).owner, f"job {job_id}")
        job = store.cancel(session, job_id, actor=principal.subject, reason="cancelled by user")
        request.app.state.wake_dispatcher()
        return read(session, job, request, principal)


@router.post("/jobs/{job_id}/retry", status_code=201, response_model=JobRead)
def retry_job(
    job_id: JobId, body: RetryRequest, request: Request, sessions: Sessions, principal: CurrentUser
) -> JobRead:
    """A new job from the same request (with overrides), optionally resuming from its checkpoint."""
    with session_scope(sessions) as session:
        original = store.get_job(session, job_id)
        require_owner(principal, original.owner, f"job {job_id}")
        if JobStatus(original.status) not in TERMINAL:
            raise InvalidTransition(f"job {job_id} is {original.status}; only finished jobs can be retried")
        check_queued_limit(session, principal.subject, request.app.state.settings.max_queued_per_user)
        resume = _resume_checkpoint(session, original) if body.resume else None
        new = retried_job(
            original,
            owner=principal.subject,
            overrides=body.overrides,
            resume_checkpoint=resume,
            limits=request.app.state.settings.spec_limits_checker,
        )
        target, wait_for = retried_target(session, new.target)
        retry = replace(new, target=target)
        _recheck_model_access(session, retry, principal, shared=request.app.state.settings.share_job_details)
        job, _ = store.add_job(
            session, retry, idempotency_key=None, body_hash=store.request_hash(body.model_dump(mode="json"))
        )
        evaluation.carry_over(session, original=original, retry=retry, retry_id=job.id)
        if wait_for is not None:
            queueing.add_dependencies(session, job.id, [(wait_for, "success")])
        request.app.state.wake_dispatcher()
        return read(session, job, request, principal, with_position=False)


def _recheck_model_access(session: Session, retry: NewJob, principal: Principal, *, shared: bool) -> None:
    """A retry acts as its owner may now, not as they could then (a group left, a model no longer
    shared): the model it evaluates, or trains versions of, is checked again as a submission's is."""
    if retry.kind == JobKind.EVAL and retry.target is not None:
        target = EvalTarget.model_validate(retry.target)
        if target.job_id is not None:
            source = store.get_job(session, target.job_id)
            require_details(principal, source.owner, shared=shared, what=f"job {source.id}")
        models.require_readable(session, target.model_name, principal, shared=shared)
    elif retry.model_name is not None:  # a name nobody owns (from before names were claimed) becomes theirs
        models.check_and_claim(session, retry.model_name, principal, group=None)


def _resume_checkpoint(session: Session, original: Job) -> str:
    """The original's latest checkpoint, which its worker reported; refused when there is none."""
    attempt = attempts.current_attempt(session, original)
    reported = (original.progress or {}).get("checkpoint")
    if original.kind != JobKind.TRAIN or attempt is None or not reported:
        raise InvalidSpec("resume", f"job {original.id} wrote no checkpoint to resume from; retry without resume")
    return f"{attempt.checkpoint_dir}/{LAST}"


@router.post("/jobs/{job_id}/hold", response_model=JobRead)
def hold_job(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> JobRead:
    """A queued job keeps its place but does not start until released."""
    return _hold(job_id, request, sessions, principal, held=True)


@router.post("/jobs/{job_id}/release", response_model=JobRead)
def release_job(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> JobRead:
    return _hold(job_id, request, sessions, principal, held=False)


def _hold(job_id: str, request: Request, sessions: Sessions, principal: Principal, *, held: bool) -> JobRead:
    with session_scope(sessions) as session:
        require_owner(principal, store.get_job(session, job_id).owner, f"job {job_id}")
        queueing.hold(session, job_id, actor=principal.subject, held=held)
    request.app.state.queue_view.forget()
    request.app.state.wake_dispatcher()
    with session_scope(sessions) as session:
        return read(session, store.get_job(session, job_id), request, principal)


@router.get("/jobs/{job_id}/events", response_model=list[EventRead])
def job_events(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> list[EventRead]:
    with read_scope(sessions) as session:
        owner = store.get_job(session, job_id).owner
        require_details(principal, owner, shared=request.app.state.settings.share_job_details, what=f"job {job_id}")
        return [EventRead.of(event) for event in store.events(session, job_id)]


@router.get("/jobs/{job_id}/metrics")
def job_metrics(job_id: JobId, request: Request, sessions: Sessions, principal: CurrentUser) -> dict[str, object]:
    with read_scope(sessions) as session:
        job = store.get_job(session, job_id)
        require_details(principal, job.owner, shared=request.app.state.settings.share_job_details, what=f"job {job_id}")
        return {"job_id": job.id, "epochs": job.metrics_history or []}


@router.get("/presets")
def presets(_: CurrentUser) -> dict[str, object]:
    return {name: config.to_dict() for name, config in sorted(PRESETS.items())}
