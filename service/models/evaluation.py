"""The standard robustness evaluation of a registered version, and the evaluation cache.

The standard evaluation is the trained config with fixed eval settings: clean accuracy, PGD-k,
AutoAttack and an epsilon sweep, all at the training job's threat model and on the same first N
test examples (`data.test_subset`), so every figure is comparable across versions.

The cache is keyed by (model name, version, hash of the resolved spec): one eval job per key (a
primary key decides races), so an identical request, by the control plane after registration or
by a user through POST /jobs, links to the existing job instead of running again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ascl.config import ExperimentConfig
from service.contracts import EvalTarget, JobKind
from service.db.models import EvalCache, Job
from service.jobs.spec import apply_overrides
from service.jobs.status import TERMINAL, JobStatus
from service.jobs.store import NewJob

SWEEP_FACTORS = (0.25, 0.5, 1.0, 1.5, 2.0)  # the epsilon sweep, as multiples of the threat model's epsilon


@dataclass(frozen=True, slots=True, kw_only=True)
class StandardEval:
    pgd_steps: int = 20
    autoattack: str = "standard"
    examples: int = 1000


def standard_overrides(trained: ExperimentConfig, plan: StandardEval) -> dict[str, Any]:
    """The eval settings of the standard evaluation, applied on top of the trained config."""
    examples = min(trained.data.test_subset or plan.examples, plan.examples)
    eps = trained.eval_eps
    return {
        "eval.pgd_steps": plan.pgd_steps,
        "eval.pgd_restarts": 1,
        "eval.autoattack": plan.autoattack,
        "eval.autoattack_examples": examples,
        "eval.eps_sweep": [round(factor * eps, 8) for factor in SWEEP_FACTORS],
        "eval.sweep_steps": plan.pgd_steps,
        "data.test_subset": examples,
    }


def standard_spec(trained_spec: dict[str, Any], plan: StandardEval) -> dict[str, Any]:
    trained = ExperimentConfig.from_dict(trained_spec)
    return apply_overrides(trained, standard_overrides(trained, plan)).to_dict()


def config_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cached_job(session: Session, *, name: str, version: str, spec_hash: str) -> Job | None:
    """The eval job already made for this key, also one added earlier in this transaction (a twin in
    the same group commit) and not yet flushed."""
    for row in session.new:
        if isinstance(row, EvalCache) and (row.model_name, row.model_version, row.config_hash) == (
            name,
            version,
            spec_hash,
        ):
            return _pending_job(session, row.job_id) or session.get(Job, row.job_id)
    entry = session.get(EvalCache, (name, version, spec_hash))
    job = None if entry is None else session.get(Job, entry.job_id)
    return None if job is None or _ended_unsuccessfully(job) else job


def _ended_unsuccessfully(job: Job) -> bool:
    """A failed or cancelled evaluation is no answer: a new request runs it again (and replaces it)."""
    return job.status in TERMINAL and job.status != JobStatus.SUCCEEDED


def _pending_job(session: Session, job_id: str) -> Job | None:
    return next((row for row in session.new if isinstance(row, Job) and row.id == job_id), None)


def remember(session: Session, *, job_id: str, name: str, version: str, spec_hash: str, standard: bool) -> None:
    """This job is the evaluation of its key from now on. One that ended unsuccessfully has its row
    deleted first: a concurrent replacement then meets the primary key, and the group commit runs
    this request again, which finds the other's job."""
    stale = session.get(EvalCache, (name, version, spec_hash))
    if stale is not None:
        unsuccessful = delete(EvalCache).where(EvalCache.job_id == stale.job_id)
        session.execute(unsuccessful.execution_options(synchronize_session=False))
        session.expunge(stale)
    session.add(
        EvalCache(model_name=name, model_version=version, config_hash=spec_hash, job_id=job_id, standard=standard)
    )


def carry_over(session: Session, *, original: Job, retry: NewJob, retry_id: str) -> None:
    """A retry of an evaluation with the same spec takes the original's place in the cache (and stays
    the version's standard evaluation, if the original was)."""
    entry = session.execute(select(EvalCache).where(EvalCache.job_id == original.id)).scalar_one_or_none()
    if entry is not None and request_key(retry) == (entry.model_name, entry.model_version, entry.config_hash):
        entry.job_id = retry_id


def is_standard(session: Session, job_id: str) -> bool:
    entry = session.execute(select(EvalCache).where(EvalCache.job_id == job_id)).scalar_one_or_none()
    return entry is not None and entry.standard


def standard_jobs(session: Session, name: str) -> dict[str, Job]:
    """version → the latest standard eval job of each version of `name`."""
    rows = session.execute(
        select(EvalCache.model_version, Job)
        .join(Job, Job.id == EvalCache.job_id)
        .where(EvalCache.model_name == name, EvalCache.standard.is_(True))
        .order_by(Job.created_at)
    )
    return {row[0]: row[1] for row in rows}


def request_key(new: NewJob) -> tuple[str, str, str] | None:
    """(name, version, spec hash) of an eval job whose version is known at submission; else None."""
    if new.kind != JobKind.EVAL or new.target is None:
        return None
    target = EvalTarget.model_validate(new.target)
    if target.model_version is None:
        return None
    return target.model_name, target.model_version, config_hash(new.spec)
