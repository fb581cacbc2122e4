"""What the control plane does for a registered version's robustness: the standard evaluation job
created when a train job registers a version (in the same transaction as the job's success, so a
crash cannot create two, and through the evaluation cache, so it never runs twice), and the
figures of a succeeded standard evaluation written as the version's tags."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from control.seams import Tracking
from service.contracts import EvalResult, EvalTarget, JobKind
from service.db.models import Job
from service.jobs import store
from service.models import evaluation
from service.models.figures import Figures

logger = logging.getLogger(__name__)
AUTO_EVAL_TAG = "auto-eval"


def standard_eval_of(version: str, plan: evaluation.StandardEval) -> Callable[[Session, Job], None]:
    """The step that creates `version`'s standard eval job, run inside the train job's success."""

    def create(session: Session, train: Job) -> None:
        name = str(train.model_name)
        try:
            spec = evaluation.standard_spec(train.spec, plan)
        except Exception:  # the train job's success must not hang on its evaluation's config
            logger.exception("model.auto_eval_skipped train_job_id=%s model=%s/%s", train.id, name, version)
            return
        key = evaluation.config_hash(spec)
        if evaluation.cached_job(session, name=name, version=version, spec_hash=key) is not None:
            return
        uri = f"models:/{name}/{version}"
        target = EvalTarget(requested=uri, model_name=name, model_version=version, run_id=train.mlflow_run_id)
        new = store.NewJob(
            kind=JobKind.EVAL,
            name=store.clipped(f"standard eval {uri}"),
            owner=train.owner,
            queue=train.queue,
            priority=train.priority,
            tags=[AUTO_EVAL_TAG],
            spec=spec,
            target=target.model_dump(),
            resources={**train.resources, "workers": 1},
            max_runtime_s=train.max_runtime_s,
            max_infra_retries=train.max_infra_retries,
            model_name=None,
            experiment=train.experiment,
        )
        job, _ = store.add_job(session, new, idempotency_key=None, body_hash=key)
        session.flush()
        evaluation.remember(session, job_id=job.id, name=name, version=version, spec_hash=key, standard=True)
        logger.info("model.auto_eval job_id=%s train_job_id=%s model=%s", job.id, train.id, uri)

    return create


def tag_figures(tracker: Tracking, result: EvalResult, *, job_id: str, run_id: str | None) -> None:
    """The version's robustness tags, with the eval run's report and plot as artifact URIs."""
    figures = Figures.from_report(result.report, eval_job_id=job_id, eval_run_id=run_id)
    tracker.tag_version(result.model_name, result.model_version, figures.to_tags())
    logger.info("model.figures model=%s version=%s job_id=%s", result.model_name, result.model_version, job_id)
