"""One attempt of one job, run by Ray as `python -m workers.entrypoint` with the attempt's identity
in the environment (its fencing token in a file only this user can read, not in the environment).
It reads its spec from the API, runs ascl, logs to the job's MLflow run, and reports the outcome.

A data-parallel train job (`workers` > 1) is run by Ray Train instead (workers/gang.py): this
process is then only the trainer's driver, and rank 0 runs `run_attempt` as a single worker would.

Exit codes: 0 when the attempt finished (or stopped on request), 1 after a failure."""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import mlflow
import torch

from service.contracts import (
    HEARTBEAT_INTERVAL_S,
    AttemptOutcome,
    AttemptSpec,
    FailureClass,
    JobKind,
    Phase,
)
from service.parent_death import die_with_parent
from workers.api_client import ApiClient, AttemptIdentity, Superseded
from workers.reporting import ServiceReporter
from workers.runs import evaluate, train
from workers.system_metrics import SystemMetrics

logger = logging.getLogger("workers.entrypoint")


def identity_from_environment() -> AttemptIdentity:
    return AttemptIdentity(
        api_url=os.environ["ASCL_API_URL"],
        job_id=os.environ["ASCL_JOB_ID"],
        attempt=int(os.environ["ASCL_ATTEMPT"]),
        token=Path(os.environ["ASCL_TOKEN_FILE"]).read_text().strip(),
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Ray's job supervisor starts this process (`exec`: no shell in between) and dies with its node's
    # raylet; the attempt must end with it at once, before the retry of the lost attempt starts.
    if not die_with_parent(signal.SIGKILL):
        logger.warning("attempt.orphaned: the job supervisor ended before the attempt started")
        return 1
    identity = identity_from_environment()
    api = ApiClient(identity)
    try:
        job = api.spec()
    except Superseded as error:
        logger.warning("attempt.superseded before start: %s", error)
        return 0
    logger.info(
        "attempt.start job_id=%s attempt=%d kind=%s CUDA_VISIBLE_DEVICES=%r",
        identity.job_id,
        identity.attempt,
        job.kind,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    if job.workers > 1 and job.kind == JobKind.TRAIN:
        from workers.gang import run_gang  # Ray Train is imported by data-parallel attempts only

        return run_gang(job)
    return run_attempt(api, job)


def run_attempt(api: ApiClient, job: AttemptSpec) -> int:
    """The attempt as the service sees it: the job's MLflow run, heartbeats and the outcome."""
    interval = float(os.environ.get("ASCL_HEARTBEAT_S", HEARTBEAT_INTERVAL_S))
    api_loss = float(os.environ.get("ASCL_API_LOSS_S", "600"))
    with (
        mlflow.start_run(run_id=job.mlflow_run_id, log_system_metrics=False),
        SystemMetrics(job.mlflow_run_id),
        ServiceReporter(api, interval_s=interval, api_loss_s=api_loss) as reporter,
    ):
        try:
            outcome = _run(job, reporter)
            reporter.flush()
        except Superseded:
            return 0
        except Exception as error:
            failure = classify(error)
            logger.exception("attempt.failed class=%s", failure)
            mlflow.log_text(traceback.format_exc(), "error.txt")
            reporter.flush()
            message = f"{type(error).__name__}: {error}"
            api.outcome(AttemptOutcome(succeeded=False, error_class=failure, error_message=message[-4000:]))
            return 1
        if outcome is not None:
            api.outcome(outcome)
    logger.info("attempt.end job_id=%s stopped=%s", job.job_id, outcome is None)
    return 0


def _run(job: AttemptSpec, reporter: ServiceReporter) -> AttemptOutcome | None:
    if job.kind == JobKind.TRAIN:
        reporter.set_phase(Phase.TRAINING)
        trained = train(job, reporter)
        return None if trained is None else AttemptOutcome(succeeded=True, train=trained)
    reporter.set_phase(Phase.EVALUATING)
    return AttemptOutcome(succeeded=True, eval=evaluate(job))


def classify(error: BaseException) -> FailureClass:
    """CUDA OOM has its own class; any other exception raised by training or evaluation code is the
    job's own failure. Infrastructure losses never reach here: the process dies without a report."""
    return FailureClass.OOM if isinstance(error, torch.cuda.OutOfMemoryError) else FailureClass.USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
