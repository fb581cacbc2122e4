"""A job request becomes a `NewJob` here, for submissions and retries alike (one place, so no
request field is lost on one path). Everything knowable at submission is checked here and answered
with a 422 naming the field: the config, the model an eval job names (resolved to one version and
its training config, which is what then runs), datasets missing under the service's data root, and
resources no node can hold."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from ascl.config import ExperimentConfig, check_same_model
from ascl.errors import ConfigError
from service.api.schemas import JobCreate
from service.auth.models import require_readable
from service.auth.principal import Principal, Role, require_details, require_role
from service.cluster import ClusterView
from service.contracts import EvalTarget, JobKind, ModelRef
from service.db.models import Job
from service.jobs import queueing, store
from service.jobs.data_root import resolve_data_dir
from service.jobs.errors import InvalidSpec, JobNotFound
from service.jobs.spec import apply_overrides, resolve_experiment
from service.jobs.spec_limits import SpecLimits
from service.jobs.status import JobStatus, is_terminal
from service.registry import ModelRegistry, RegisteredVersion
from service.settings import ServiceSettings

MODEL_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS or the id of a succeeded train job"


def resolve_registered(
    body: JobCreate, registry: ModelRegistry, principal: Principal, may_read: Callable[[str], None]
) -> RegisteredVersion | None:
    """The registry's answer for an eval job's models:/ reference (a network call: made before the
    job's database transaction, never inside it); None for anything else. Who may not submit, or
    may not read the model (`may_read` raises), learns nothing of its versions."""
    if body.kind != JobKind.EVAL or body.model is None or not ModelRef.looks_like_uri(body.model):
        return None
    require_role(principal, Role.USER, "submit jobs")
    try:
        ref = ModelRef.parse(body.model)
    except ValueError as error:
        raise InvalidSpec("model", str(error)) from None
    may_read(ref.name)
    return registry.resolve(ref)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a request yields without the database, worked out before its transaction so that the
    group commit's one thread only reads and writes: the body's hash and a train job's config,
    resolved and checked, or the error that met it. `build_new_job` raises that error where it
    would have met it, so a request with several problems is answered as before."""

    body_hash: str
    config: ExperimentConfig | None = None
    error: Exception | None = None

    def checked_config(self) -> ExperimentConfig:
        if self.error is not None:
            raise self.error
        if self.config is None:
            raise ValueError("an eval job's config is resolved in its transaction")
        return self.config


def prepare(body: JobCreate, settings: ServiceSettings) -> Prepared:
    """A train job's config (or the error it meets); an eval job's comes from its model."""
    body_hash = store.request_hash(body.model_dump(mode="json"))
    if body.kind == JobKind.EVAL or body.model is not None:
        return Prepared(body_hash)
    try:
        config = resolve_experiment(preset=body.preset, experiment=body.experiment, overrides=body.overrides)
        return Prepared(body_hash, config=_checked(config, body, settings))
    except Exception as error:  # raised in the transaction, in the order the checks run there
        return Prepared(body_hash, error=error)


def _checked(config: ExperimentConfig, body: JobCreate, settings: ServiceSettings) -> ExperimentConfig:
    config = resolve_data_dir(config, settings.data_root)
    settings.spec_limits_checker.check(config, field_of=lambda path: _request_field(body, path))
    return config


def build_new_job(
    body: JobCreate,
    *,
    principal: Principal,
    session: Session,
    registered: RegisteredVersion | None,
    cluster: ClusterView,
    settings: ServiceSettings,
    prepared: Prepared | None = None,
) -> store.NewJob:
    """Raises before anything is written (the group commit relies on it). `prepared`: `prepare`'s
    answer for this body, made before the transaction (made here without it)."""
    require_role(principal, Role.USER, "submit jobs")
    queue = queueing.require_queue(session, body.queue)
    priority = queue.default_priority or 0  # the admin's choice for the queue: no limit applies
    if "priority" in body.model_fields_set:
        priority = body.priority
        _check_priority(priority, principal, settings.user_priority_limit)
    resources = gang_resources(body)
    _check_feasible(resources, cluster, forced=body.force_queue)
    _check_dependencies(body, session, principal, shared=settings.share_job_details)
    if body.kind == JobKind.EVAL:
        target, base = _eval_target(body, session, registered)
        if target.job_id is not None:
            source = store.get_job(session, target.job_id)
            require_details(principal, source.owner, shared=settings.share_job_details, what=f"job {source.id}")
        require_readable(session, target.model_name, principal, shared=settings.share_job_details)
        trained = ExperimentConfig.from_dict(base)
        config = _checked(apply_overrides(trained, body.overrides), body, settings)
        try:
            check_same_model(trained, config)
        except ConfigError as error:
            raise InvalidSpec(f"overrides.{error.field}", error.problem) from None
    else:
        if body.model is not None:
            raise InvalidSpec("model", "only eval jobs take 'model'")
        target = None
        config = (prepared or prepare(body, settings)).checked_config()
    name = body.name or (store.clipped(f"eval {body.model}") if body.kind == JobKind.EVAL else config.name)
    model_name = body.model_name or (
        default_model_name(principal.subject, config.name) if body.kind == JobKind.TRAIN else None
    )
    return store.NewJob(
        kind=body.kind,
        name=name,
        owner=principal.subject,
        queue=body.queue,
        priority=priority,
        tags=body.tags,
        spec=config.to_dict(),
        target=None if target is None else target.model_dump(),
        resources=resources,
        max_runtime_s=body.max_runtime_s or settings.default_max_runtime_s,
        max_infra_retries=body.max_infra_retries,
        model_name=model_name,
        experiment=body.mlflow_experiment,
        held_by=principal.subject if body.hold else None,
        auto_evaluate=body.auto_evaluate,
    )


def retried_job(
    original: Any, *, owner: str, overrides: dict[str, Any], resume_checkpoint: str | None, limits: SpecLimits
) -> store.NewJob:
    """A new job from a finished one: every field of the original, its spec with `overrides`."""
    config = apply_overrides(ExperimentConfig.from_dict(original.spec), overrides)
    limits.check(config, field_of=lambda path: f"overrides.{path}" if path in overrides else "job")
    return replace(
        store.NewJob.of(original),
        owner=owner,
        spec=config.to_dict(),
        retried_from=original.id,
        resume_checkpoint=resume_checkpoint,
        sweep_id=None,  # a retried trial is the user's own job, outside the search
        trial_number=None,
        held_by=None,
    )


def retried_target(session: Session, target: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """A retried eval's target, and the train job the retry must wait for (None: none). An eval of
    a train job that had no model yet (cancelled while it waited) is resolved from that job if it
    has registered one since, waits for it again if it has not ended, and is refused (422) if it
    ended without one: started without a version, it would fail at once."""
    if target is None or not queueing.awaits_model(target):
        return target, None
    source = session.get(Job, target["job_id"])
    if source is None or (is_terminal(source.status) and not source.registered_model_version):
        ended = f"ended {source.status}" if source is not None else "no longer exists"
        raise InvalidSpec("model", f"job {target['job_id']} {ended} with no registered model: nothing to evaluate")
    if source.registered_model_version is None:
        return target, source.id
    return queueing.with_model(target, source.registered_model_version, source.mlflow_run_id), None


def _request_field(body: JobCreate, path: str) -> str:
    """Where in the request a config field came from: an override, the experiment body, or else the
    preset (or evaluated model) that set it."""
    if path in body.overrides:
        return f"overrides.{path}"
    if body.experiment is not None:
        return f"experiment.{path}"
    return "model" if body.kind == JobKind.EVAL else "preset"


def default_model_name(owner: str, experiment: str) -> str:
    """'<owner>-<experiment name>': names belong to their creator, so the default is per user."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{owner}-{experiment}")[:200]


def check_queued_limit(session: Session, owner: str, limit: int) -> None:
    """A user's waiting jobs are bounded (one COUNT on an index): a runaway loop cannot fill the queue."""
    waiting = queueing.queued_count(session, owner)
    if waiting >= limit:
        raise InvalidSpec("queue", f"{owner} already has {waiting} queued jobs; the limit is {limit} per user")


def _check_dependencies(body: JobCreate, session: Session, principal: Principal, *, shared: bool) -> None:
    for index, dependency in enumerate(body.depends_on):
        try:
            parent = store.get_job(session, dependency.job)
        except JobNotFound:
            raise InvalidSpec(f"depends_on.{index}.job", f"no job {dependency.job!r}") from None
        require_details(principal, parent.owner, shared=shared, what=f"job {parent.id}")
        if dependency.on == "success" and is_terminal(parent.status) and parent.status != JobStatus.SUCCEEDED:
            raise InvalidSpec(
                f"depends_on.{index}.job", f"job {parent.id} ended {parent.status}: it cannot succeed now"
            )
    if len({dependency.job for dependency in body.depends_on}) != len(body.depends_on):
        raise InvalidSpec("depends_on", "names a job twice")


def _check_priority(priority: int, principal: Principal, limit: int) -> None:
    if abs(priority) > limit and not principal.is_admin:
        raise InvalidSpec("priority", f"|priority| above {limit} needs the admin role (got {priority})")


def _eval_target(
    body: JobCreate, session: Session, registered: RegisteredVersion | None
) -> tuple[EvalTarget, dict[str, Any]]:
    """(the model evaluated, the config it was trained with) for a models:/ reference or a job id."""
    if body.model is None:
        raise InvalidSpec("model", f"an eval job needs 'model': {MODEL_FORMS}")
    if registered is not None:
        target = EvalTarget(
            requested=body.model, model_name=registered.name, model_version=registered.version, run_id=registered.run_id
        )
        return target, registered.config
    try:
        source = store.get_job(session, body.model)
    except JobNotFound:
        raise InvalidSpec(
            "model", f"no job {body.model[:64]!r}; to evaluate a registered model use {MODEL_FORMS}"
        ) from None
    version = source.registered_model_version
    if source.kind != JobKind.TRAIN or not source.model_name:
        raise InvalidSpec("model", f"job {source.id} is a {source.kind} job that registers no model")
    waits_for_it = any(d.job == source.id and d.on == "success" for d in body.depends_on)
    if not waits_for_it and (source.status != JobStatus.SUCCEEDED or not version or source.mlflow_run_id is None):
        raise InvalidSpec(
            "model",
            f"job {source.id} is {source.status} with no registered model yet; to evaluate it once it has, "
            f'add depends_on: [{{"job": "{source.id}"}}]',
        )
    target = EvalTarget(
        requested=body.model,
        model_name=source.model_name,
        model_version=version if source.status == JobStatus.SUCCEEDED else None,
        run_id=source.mlflow_run_id if source.status == JobStatus.SUCCEEDED else None,
        job_id=source.id,
    )
    return target, source.spec


def gang_resources(body: JobCreate) -> dict[str, Any]:
    """The resources to store, per worker. `gpus: N > 1` on one worker of a train job means N
    data-parallel workers with one GPU each (each worker trains on one device); a gang of workers
    with several GPUs each is refused, and so is an eval job on several workers."""
    resources = body.resources.model_dump()
    gpus, workers = resources["gpus"], resources["workers"]
    if body.kind == JobKind.EVAL:
        if workers > 1:
            raise InvalidSpec("resources.workers", "an eval job runs on one worker")
        return resources
    if gpus > 1 and workers > 1:
        raise InvalidSpec(
            "resources.gpus",
            f"{gpus:g} GPUs per worker: each data-parallel worker trains on one GPU; ask for gpus <= 1 and workers",
        )
    if gpus > 1:
        if not float(gpus).is_integer():
            raise InvalidSpec(
                "resources.gpus", f"{gpus:g} GPUs: more than one GPU is one worker per GPU, a whole number"
            )
        resources |= {"gpus": 1.0, "workers": int(gpus)}
    return resources


def _check_feasible(resources: dict[str, Any], cluster: ClusterView, *, forced: bool) -> None:
    """Each worker must fit some node; whether the whole gang fits is the scheduler's call."""
    largest = cluster.largest_node()
    if largest is None or forced:
        return
    for field, key, asked in (
        ("gpus", "GPU", resources["gpus"]),
        ("cpus", "CPU", resources["cpus"]),
        ("memory_gb", "memory", (resources["memory_gb"] or 0.0) * 2**30),
    ):
        have = largest.get(key, 0.0)
        if asked > have:
            shown = (asked / 2**30, have / 2**30) if key == "memory" else (asked, have)
            raise InvalidSpec(
                f"resources.{field}",
                f"{shown[0]:g} requested but the largest node has {shown[1]:g}; "
                "set force_queue=true (`ascl jobs submit --force-queue`) to queue it anyway",
            )
