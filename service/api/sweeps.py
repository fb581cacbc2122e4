"""Sweep routes: create (or dry-run), list, read, its trials, change its limits, cancel. Trials are
created lazily by the control plane, never more at once than the concurrency needs, so creating a
sweep of any length is one row and one Optuna study."""

from __future__ import annotations

import uuid
from pathlib import Path as PathType
from typing import Annotated, Any

import optuna
from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ascl.config import ExperimentConfig
from service.api.auth import CurrentUser
from service.api.deps import Sessions
from service.api.submission import build_new_job, check_queued_limit
from service.api.sweep_schemas import (
    DryRunTrial,
    SweepCancel,
    SweepCreate,
    SweepDryRun,
    SweepPage,
    SweepPatch,
    SweepRead,
    TrialRead,
)
from service.auth import models
from service.auth.principal import (
    USER_PATTERN,
    Principal,
    Role,
    may_read_details,
    require_details,
    require_owner,
    require_role,
)
from service.contracts import ID_PREFIX_PATTERN, JobKind
from service.db import read_scope, session_scope
from service.db.models import Sweep
from service.jobs import store
from service.jobs.errors import InvalidSpec, InvalidTransition
from service.jobs.status import JobStatus, is_terminal
from service.settings import ServiceSettings
from service.sweeps import metric_checks, objectives, records, space, study, trials
from service.sweeps.records import ENDED, SweepStatus

router = APIRouter()
FIRST_TRIALS_CHECKED = 4  # made at creation, as a dry run makes its first: none can be made, a 422
# a dry run shows the first trials (as many as run at once, up to this): each is asked of the sampler
# and made, and a thousand took seconds of a worker's time for one small request
MAX_DRY_RUN_TRIALS = 20
SweepId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


@router.post("/sweeps", status_code=201, response_model=SweepRead | SweepDryRun)
def create_sweep(
    body: SweepCreate, request: Request, sessions: Sessions, principal: CurrentUser, dry_run: bool = False
) -> SweepRead | SweepDryRun:
    """Validate everything a trial could meet (base job, search space, objectives, limits); with
    dry_run, answer the first trials' resolved specs instead of starting."""
    require_role(principal, Role.USER, "start sweeps")
    state = request.app.state
    with read_scope(sessions) as session:
        template, planned = _validated(body, principal, session, state)
        if not dry_run:
            _check_room(session, principal.subject, state.settings)
    first = min(body.max_concurrency, planned, MAX_DRY_RUN_TRIALS) if dry_run else min(FIRST_TRIALS_CHECKED, planned)
    shown = _first_trials(body, template, planned, count=first, data_root=state.settings.data_root)
    if dry_run:
        return shown
    sweep_id = uuid.uuid4().hex
    directions = [objective.direction for objective in body.objective]
    storage = study.storage(state.settings.resolved_database_url)  # outside our transaction: its own writes
    study_name = f"ascl-sweep-{sweep_id}"
    study.retrying(optuna.create_study, storage=storage, study_name=study_name, directions=directions)
    try:
        with session_scope(sessions) as session:
            if body.base.model_name is not None:  # trials register under it, as the owner's job would
                models.check_and_claim(session, body.base.model_name, principal, group=body.base.model_group)
            sweep = records.add(
                session,
                records.NewSweep(
                    id=sweep_id,
                    name=body.name,
                    owner=principal.subject,
                    request=body.model_dump(mode="json", by_alias=True),
                    base_spec=template,
                    study_name=study_name,
                    max_trials=planned,
                    max_concurrency=body.max_concurrency,
                    max_failed_trials=body.max_failed_trials,
                ),
            )
            read = SweepRead.of(sweep, trials={}, gpu_seconds=0.0, details=True, ui=state.mlflow_ui_url)
    except BaseException:  # no sweep: its study goes too (a name claimed by another meanwhile, say)
        study.retrying(optuna.delete_study, study_name=study_name, storage=storage)
        raise
    state.wake_dispatcher()
    return read


def _check_room(session: Session, owner: str, settings: ServiceSettings) -> None:
    """A sweep's trials are its owner's queued jobs: it is refused where a job would be, and a
    user's running sweeps are bounded. Checked before the sweep is written, in another transaction:
    requests racing past it are bounded by the user's requests in progress."""
    check_queued_limit(session, owner, settings.max_queued_per_user)
    running, limit = records.running_count(session, owner), settings.max_running_sweeps_per_user
    if running >= limit:
        raise InvalidSpec("sweep", f"{owner} already has {running} running sweeps; the limit is {limit} per user")


def _validated(body: SweepCreate, principal: Principal, session: Session, state: Any) -> tuple[dict[str, Any], int]:
    """(the trial template, the number of trials planned); every error names the request's field."""
    if body.base.kind != JobKind.TRAIN:
        raise InvalidSpec("base.kind", "a sweep's trials are train jobs")
    settings = state.settings
    limit = settings.max_sweep_trials
    if body.max_trials > limit:
        raise InvalidSpec("max_trials", f"{body.max_trials} trials asked; this service allows {limit} per sweep")
    try:
        new = build_new_job(
            body.base,
            principal=principal,
            session=session,
            registered=None,
            cluster=state.cluster,
            settings=state.settings,
        )
        if body.base.model_name is not None:  # refused before anything is made, dry runs too
            models.check_writable(session, body.base.model_name, principal, group=body.base.model_group)
    except InvalidSpec as error:
        raise InvalidSpec(f"base.{error.field}", str(error).split(": ", 1)[-1]) from None
    if body.algorithm == "grid":  # before the values are checked one by one: a grid is bounded first
        space.check_grid(body.space)
    base = ExperimentConfig.from_dict(new.spec)
    space.validate(body.space, base, state.settings.spec_limits_checker, state.settings.data_root)
    if body.algorithm == "nsga2" and len(body.objective) != 2:
        raise InvalidSpec("algorithm", "nsga2 searches two objectives: give two in 'objective'")
    for objective in body.objective:
        metric_checks.check_reported(objective.metric, "objective.metric", body.space, base)
    if body.early_stopping is not None:
        if len(body.objective) != 1:
            raise InvalidSpec("early_stopping", "early stopping needs a single objective")
        metric_checks.check_pruning(body.early_stopping.metric, body.objective[0], body.space, base)
    planned = body.max_trials
    if body.algorithm == "grid":
        planned = min(planned, space.grid_size(body.space))
    return trials.template(new, explicit_model_name=body.base.model_name), planned


def _first_trials(
    body: SweepCreate, template: dict[str, Any], planned: int, *, count: int, data_root: PathType | None
) -> SweepDryRun:
    """The first `count` trials, made as the controller will make them. Values valid alone may not
    be together (two views with another objective than ascl): such a trial shows its problem (the
    controller fails it, against max_failed_trials), and a sweep none of whose first trials can be
    made is refused."""
    directions = [objective.direction for objective in body.objective]
    params = study.first_params(
        algorithm=body.algorithm, seed=body.seed, space=body.space, directions=directions, count=count
    )
    first: list[DryRunTrial] = []
    problems: list[Exception] = []
    for number, chosen in enumerate(params):
        try:
            job = trials.trial_job(
                template, sweep_id="0" * 32, sweep_name=body.name, number=number, params=chosen, data_root=data_root
            )
        except trials.UNMAKEABLE as error:  # as the controller fails such a trial
            problems.append(error)
            first.append(DryRunTrial(number=number, params=chosen, spec=None, problem=str(error)))
            continue
        first.append(DryRunTrial(number=number, params=chosen, spec=job.spec))
    if first and len(problems) == len(first):
        raise problems[0]
    return SweepDryRun(trials_planned=planned, first_trials=first)


@router.get("/sweeps", response_model=SweepPage)
def list_sweeps(
    request: Request,
    sessions: Sessions,
    principal: CurrentUser,
    status: Annotated[list[SweepStatus] | None, Query(max_length=len(SweepStatus))] = None,
    owner: Annotated[str | None, Query(max_length=100, pattern=USER_PATTERN)] = None,
    id_prefix: Annotated[str | None, Query(pattern=ID_PREFIX_PATTERN, description="the start of the id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]+$")] = None,
) -> SweepPage:
    with read_scope(sessions) as session:
        try:
            page, next_cursor = records.listed(
                session,
                statuses=[s.value for s in status] if status else None,
                owner=owner,
                id_prefix=id_prefix,
                limit=limit,
                cursor=cursor,
            )
        except ValueError:
            raise InvalidSpec("cursor", "not a cursor returned by this API") from None
        return SweepPage(items=[_read(session, sweep, request, principal) for sweep in page], next_cursor=next_cursor)


@router.get("/sweeps/{sweep_id}", response_model=SweepRead)
def get_sweep(sweep_id: SweepId, request: Request, sessions: Sessions, principal: CurrentUser) -> SweepRead:
    with read_scope(sessions) as session:
        return _read(session, records.get(session, sweep_id), request, principal)


def _read(session: Session, sweep: Sweep, request: Request, principal: Principal) -> SweepRead:
    shared = request.app.state.settings.share_job_details
    return SweepRead.of(
        sweep,
        trials=records.counts(session, sweep.id),
        gpu_seconds=records.gpu_seconds(session, sweep.id),
        details=may_read_details(principal, sweep.owner, shared=shared),
        ui=request.app.state.mlflow_ui_url,
    )


@router.get("/sweeps/{sweep_id}/trials", response_model=list[TrialRead])
def sweep_trials(sweep_id: SweepId, request: Request, sessions: Sessions, principal: CurrentUser) -> list[TrialRead]:
    with read_scope(sessions) as session:
        sweep = records.get(session, sweep_id)
        shared = request.app.state.settings.share_job_details
        require_details(principal, sweep.owner, shared=shared, what=f"sweep {sweep_id}")
        keys = list(sweep.request["space"])
        metrics = [objective["metric"] for objective in sweep.request["objective"]]
        return [
            TrialRead(
                number=job.trial_number or 0,
                job_id=job.id,
                status=records.trial_state(job.status, job.error_class),
                reason=job.error_message if job.status != JobStatus.SUCCEEDED else None,
                params=trials.params_of(job.spec, keys),
                values=[objectives.final_value(m, job.result, job.metrics_history or []) for m in metrics],
                epochs=len(job.metrics_history or []),
                gpu_seconds=job.gpu_seconds or 0.0,
            )
            for job in records.trials(session, sweep.id)
        ]


@router.patch("/sweeps/{sweep_id}", response_model=SweepRead)
def patch_sweep(
    sweep_id: SweepId, body: SweepPatch, request: Request, sessions: Sessions, principal: CurrentUser
) -> SweepRead:
    """Change a running sweep's length, concurrency or failure budget; the next cycle applies it."""
    with session_scope(sessions) as session:
        sweep = records.get(session, sweep_id)
        require_owner(principal, sweep.owner, f"sweep {sweep_id}")
        if sweep.status != SweepStatus.RUNNING:
            raise InvalidTransition(f"sweep {sweep_id} is {sweep.status}; only a running sweep changes")
        if body.max_trials is not None:
            limit = request.app.state.settings.max_sweep_trials
            if body.max_trials > limit:
                raise InvalidSpec("max_trials", f"this service allows {limit} trials per sweep")
            if sweep.request["algorithm"] == "grid":
                sweep.max_trials = min(body.max_trials, _grid_size(sweep))
            else:
                sweep.max_trials = body.max_trials
        if body.max_concurrency is not None:
            sweep.max_concurrency = body.max_concurrency
        if body.max_failed_trials is not None:
            sweep.max_failed_trials = body.max_failed_trials
        request.app.state.wake_dispatcher()
        return _read(session, sweep, request, principal)


def _grid_size(sweep: Sweep) -> int:
    try:
        grid = {k: space.Dimension.model_validate(v) for k, v in sweep.request["space"].items()}
    except ValidationError:  # stored by a version with other rules (e.g. a newer one, not yet here)
        raise InvalidTransition(
            f"sweep {sweep.id}'s stored space does not read under this version's rules: its grid size is "
            "unknown here, so its length cannot change until this service is upgraded"
        ) from None
    return space.grid_size(grid)


@router.post("/sweeps/{sweep_id}/cancel", response_model=SweepRead)
def cancel_sweep(
    sweep_id: SweepId, body: SweepCancel, request: Request, sessions: Sessions, principal: CurrentUser
) -> SweepRead:
    """Queued trials are cancelled at once; running ones are stopped, or left to finish."""
    with session_scope(sessions) as session:
        sweep = records.get(session, sweep_id)
        require_owner(principal, sweep.owner, f"sweep {sweep_id}")
        if SweepStatus(sweep.status) in ENDED:
            raise InvalidTransition(f"sweep {sweep_id} is already {sweep.status}")
        sweep.status, sweep.outcome = SweepStatus.STOPPING.value, SweepStatus.CANCELLED.value
        sweep.reason, sweep.stop_running = f"cancelled by {principal.subject}", body.running == "stop"
        for job in records.trials(session, sweep.id):
            stop = job.status == JobStatus.QUEUED or (sweep.stop_running and job.status != JobStatus.CANCELLING)
            if stop and not is_terminal(job.status):
                store.cancel(session, job.id, actor=principal.subject, reason=f"sweep {sweep_id} cancelled")
        request.app.state.wake_dispatcher()
        return _read(session, sweep, request, principal)
