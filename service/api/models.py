"""Model routes: registered models with their versions' robustness side by side, the comparison
plot, and `@champion` moved by rules (service/models/promotion.py), every move recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.api.auth import CurrentUser
from service.api.deps import Sessions
from service.api.model_schemas import ModelDetail, ModelList, ModelView, PromoteRequest, PromoteResult, SortKey
from service.api.model_views import CHAMPION, alias_moves, move_view, sort_versions, version_view
from service.auth.principal import Principal, Role, may_read_model, may_write_model, require_role
from service.contracts import MODEL_NAME_PATTERN
from service.db import read_scope, session_scope
from service.db.models import AliasMove, ModelOwner
from service.jobs.errors import Forbidden, NotFound, TooMany
from service.jobs.store import now
from service.models import evaluation, promotion
from service.models.figures import Figures
from service.models.plot import Point, comparison_png
from service.registry import ModelRegistry, VersionRecord

router = APIRouter()
MAX_VERSIONS_SHOWN = 1_000
ModelName = Annotated[str, Path(max_length=200, pattern=MODEL_NAME_PATTERN)]


@router.get("/models", response_model=ModelList)
def list_models(request: Request, sessions: Sessions, principal: CurrentUser) -> ModelList:
    """The models this user may read, each with its version count and its champion."""
    shared = request.app.state.settings.share_job_details
    with read_scope(sessions) as session:  # the database first: no connection is held while MLflow answers
        owners = session.execute(select(ModelOwner).order_by(ModelOwner.name)).scalars().all()
        readable = [o for o in owners if may_read_model(principal, o.owner, o.group, shared=shared)]
        jobs_of = {owner.name: evaluation.standard_jobs(session, owner.name) for owner in readable}
    ui = request.app.state.mlflow_ui_url
    models = []
    for owner in readable:
        summary = _registry(request).summary(owner.name, CHAMPION)
        champion = summary.champion
        models.append(
            ModelView(
                name=owner.name,
                owner=owner.owner,
                group=owner.group,
                versions=summary.versions,
                latest_version=summary.latest_version,
                champion=None
                if champion is None
                else version_view(champion, owner=owner, job=jobs_of[owner.name].get(champion.version), ui=ui),
            )
        )
    return ModelList(models=models)


@router.get("/models/{name}", response_model=ModelDetail)
def get_model(
    name: ModelName,
    request: Request,
    sessions: Sessions,
    principal: CurrentUser,
    sort: SortKey = "version",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_VERSIONS_SHOWN)] = 200,
) -> ModelDetail:
    """The versions with their figures, sorted as asked (versions without that figure last), the
    first `limit` of them: a model that sweeps add to can have thousands."""
    with read_scope(sessions) as session:  # the database first: no connection is held while MLflow answers
        owner = _readable(session, name, principal, request)
        jobs = evaluation.standard_jobs(session, name)
        moves = alias_moves(session, name)
    ui = request.app.state.mlflow_ui_url
    views = [version_view(r, owner=owner, job=jobs.get(r.version), ui=ui) for r in _registry(request).versions(name)]
    return ModelDetail(
        name=name,
        owner=owner.owner,
        group=owner.group,
        versions=sort_versions(views, sort, descending=order == "desc")[:limit],
        total_versions=len(views),
        alias_moves=moves,
    )


@router.get("/models/{name}/comparison.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def comparison(name: ModelName, request: Request, sessions: Sessions, principal: CurrentUser) -> Response:
    """Clean against robust accuracy, one point per evaluated version, the Pareto front marked."""
    with read_scope(sessions) as session:
        _readable(session, name, principal, request)
    evaluated = [(r, Figures.from_tags(r.tags)) for r in _registry(request).versions(name)]
    figures = [(r, f) for r, f in evaluated if f is not None]
    points = [Point(version=r.version, clean_acc=f.clean_acc, robust_acc=f.robust_acc) for r, f in figures]
    threat_models = sorted({f.threat_model for _, f in figures})
    png = comparison_png(name, points, threat_model=", ".join(threat_models) or "no threat model")
    return Response(content=png, media_type="image/png")


@router.post("/models/{name}/promote", response_model=PromoteResult)
def promote(
    name: ModelName, body: PromoteRequest, request: Request, sessions: Sessions, principal: CurrentUser
) -> PromoteResult:
    """Move the alias to `version` if the rules allow (owner, group or admin only). A refusal is an
    answer, not an error: `promoted` false and the reason."""
    require_role(principal, Role.USER, "move aliases")
    with read_scope(sessions) as session:
        owner = _owner(session, name)
        if not may_write_model(principal, owner.owner, owner.group):
            raise Forbidden(f"model {name!r} belongs to {owner.owner}: only its owner, group or an admin moves aliases")
    with _promoting(name):
        return _promote(name, body, _registry(request), sessions, principal)


_PROMOTIONS: dict[str, threading.Lock] = {}
_PROMOTIONS_GUARD = threading.Lock()
PROMOTION_WAIT_S = 30.0


@contextmanager
def _promoting(name: str) -> Iterator[None]:
    """One promotion of a model at a time in this process: each decides against the holder the
    previous one left (two at once both won against the same old champion, and the record disagreed
    with MLflow). Across processes, the owner row's lock in `_promote` does the same on PostgreSQL."""
    with _PROMOTIONS_GUARD:
        lock = _PROMOTIONS.setdefault(name, threading.Lock())
    if not lock.acquire(timeout=PROMOTION_WAIT_S):
        raise TooMany(f"another promotion of model {name!r} is in progress; try again")
    try:
        yield
    finally:
        lock.release()


def _promote(
    name: str, body: PromoteRequest, registry: ModelRegistry, sessions: sessionmaker[Session], principal: Principal
) -> PromoteResult:
    # the move is recorded if and only if the registry took it; the model's owner row stays locked
    # meanwhile (PostgreSQL), so API processes promote one after another too
    with session_scope(sessions) as session:
        session.execute(select(ModelOwner).where(ModelOwner.name == name).with_for_update())
        records = {r.version: r for r in registry.versions(name)}
        candidate = _version(records, name, body.version)
        holder = next((r for r in records.values() if body.alias in r.aliases), None)
        decision = promotion.decide(
            version=candidate.version,
            candidate=Figures.from_tags(candidate.tags),
            holder=None if holder is None else holder.version,
            champion=None if holder is None else Figures.from_tags(holder.tags),
            max_clean_drop=body.max_clean_drop,
        )
        if not decision.promoted:
            return PromoteResult(promoted=False, reason=decision.reason, move=None)
        row = AliasMove(
            model_name=name,
            alias=body.alias,
            version=candidate.version,
            previous_version=None if holder is None else holder.version,
            actor=principal.subject,
            at=now(),
            figures=decision.figures,
        )
        session.add(row)
        session.flush()
        registry.set_alias(name, body.alias, candidate.version)
        move = move_view(row)
    return PromoteResult(promoted=True, reason=decision.reason, move=move)


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def _owner(session: Session, name: str) -> ModelOwner:
    owner = session.get(ModelOwner, name)
    if owner is None:
        raise NotFound(f"no model {name!r} on this service")
    return owner


def _readable(session: Session, name: str, principal: Principal, request: Request) -> ModelOwner:
    owner = _owner(session, name)
    if not may_read_model(principal, owner.owner, owner.group, shared=request.app.state.settings.share_job_details):
        raise Forbidden(f"model {name!r} belongs to {owner.owner} and is not shared on this service")
    return owner


def _version(records: dict[str, VersionRecord], name: str, version: str) -> VersionRecord:
    if version not in records:
        raise NotFound(f"model {name!r} has no version {version[:40]!r}")
    return records[version]
