"""One attempt of one job, run by Ray as `python -m workers.entrypoint` with the attempt's identity
in the environment. It reads its spec from the API, parses it with the API's own parser, trains or
evaluates with ascl, logs to the job's MLflow run, and reports the outcome to the API.

Exit codes: 0 when the attempt finished (or stopped on request), 1 after a reported failure."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from ascl.experiment import BEST, LAST, PLOT, REPORT, evaluate_checkpoint, load_classifier, run_experiment
from ascl.models import LogitsOnly
from service.jobs.spec import parse_stored
from service.jobs.status import FailureClass
from workers.api_client import ApiClient, AttemptIdentity, Superseded
from workers.reporting import ServiceReporter
from workers.system_metrics import SystemMetrics

logger = logging.getLogger("workers.entrypoint")
CHECKPOINT_ARTIFACT = "checkpoint"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    identity = AttemptIdentity(
        api_url=os.environ["ASCL_API_URL"],
        job_id=os.environ["ASCL_JOB_ID"],
        attempt=int(os.environ["ASCL_ATTEMPT"]),
        token=os.environ["ASCL_TOKEN"],
    )
    api = ApiClient(identity)
    try:
        job = api.spec()
    except Superseded as error:
        logger.warning("attempt.superseded before start: %s", error)
        return 0
    logger.info("attempt.start job_id=%s attempt=%d kind=%s", identity.job_id, identity.attempt, job["kind"])
    with (
        mlflow.start_run(run_id=job["mlflow_run_id"], log_system_metrics=False),
        SystemMetrics(job["mlflow_run_id"]),
        ServiceReporter(api, interval_s=float(os.environ.get("ASCL_HEARTBEAT_S", "10"))) as reporter,
    ):
        try:
            result = train(job, reporter) if job["kind"] == "train" else evaluate(job, reporter)
        except Superseded:
            return 0
        except Exception as error:
            failure = classify(error)
            logger.exception("attempt.failed class=%s", failure)
            mlflow.log_text(traceback.format_exc(), "error.txt")
            reporter.flush()
            api.result(succeeded=False, error_class=failure, error_message=f"{type(error).__name__}: {error}")
            return 1
        reporter.flush()
        if result is not None:
            api.result(succeeded=True, result=result)
    logger.info("attempt.end job_id=%s stopped=%s", identity.job_id, result is None)
    return 0


def classify(error: BaseException) -> str:
    """CUDA OOM has its own class; any other exception raised by training or evaluation code is the
    job's own failure. Infrastructure losses never reach here: the process dies without a report."""
    return FailureClass.OOM if isinstance(error, torch.cuda.OutOfMemoryError) else FailureClass.USER_ERROR


def train(job: dict[str, Any], reporter: ServiceReporter) -> dict[str, Any] | None:
    config = parse_stored(job["spec"])
    run_dir = Path(job["checkpoint_dir"])
    resume = Path(job["resume_checkpoint"]) if job.get("resume_checkpoint") else None
    resumed_from = _completed_epochs(run_dir / LAST) or (_completed_epochs(resume) if resume else 0)
    mlflow.log_params(_flatten(config.to_dict()))
    mlflow.set_tags(
        {
            "threat_model": f"{config.attack.norm} eps={config.eval_eps:g}",
            "objective": config.objective.kind,
            "dataset": config.data.dataset,
            "model": config.model.arch,
        }
    )
    reporter.set_phase("training")
    result = run_experiment(
        config,
        run_dir=run_dir,
        reporter=reporter,
        should_stop=reporter.should_stop,
        resume_from=resume if resume and not (run_dir / LAST).exists() else None,
    )
    if result.stopped:
        return None
    reporter.set_phase("logging model")
    test = result.test or {}
    final = {f"test_{k}": v for k, v in test.items() if isinstance(v, float)}
    if result.positive_fraction is not None and result.negative_fraction is not None:
        final |= {"positive_fraction": result.positive_fraction, "negative_fraction": result.negative_fraction}
    mlflow.log_metrics(final)
    for name in ("config.json", REPORT, PLOT):
        if (run_dir / name).exists():
            mlflow.log_artifact(str(run_dir / name))
    chosen = run_dir / (test.get("checkpoint") or LAST)
    mlflow.log_artifact(str(chosen), artifact_path=CHECKPOINT_ARTIFACT)
    model_uri = _log_model(chosen)
    return {
        "model_uri": model_uri,
        "checkpoint": chosen.name,
        "test": test,
        "best_epoch": result.best_epoch,
        "best_val_robust_acc": result.best_val_robust_acc,
        "epochs_completed": result.epochs_completed,
        "resumed_from_epoch": resumed_from,
        "positive_fraction": result.positive_fraction,
        "negative_fraction": result.negative_fraction,
        "seconds": result.seconds,
    }


def _log_model(checkpoint: Path) -> str:
    """The classifier as an MLflow model (logits out), with a signature and an input example."""
    model, _, data = load_classifier(checkpoint, device="cpu")
    example = data.test.images[:2].float().div(255.0)
    serving = LogitsOnly(model).eval()
    with torch.no_grad():
        output = serving(example).numpy()
    signature = infer_signature(example.numpy(), output)
    info = mlflow.pytorch.log_model(
        serving, name="model", signature=signature, input_example=example.numpy().astype(np.float32), export_model=False
    )
    return str(info.model_uri)


def evaluate(job: dict[str, Any], reporter: ServiceReporter) -> dict[str, Any]:
    target = job["target"]
    version = _model_version(target["model_uri"])
    local = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=CHECKPOINT_ARTIFACT))
    checkpoint = next(iter(sorted(local.glob("*.pt"), key=lambda p: p.name != BEST)))
    out_dir = Path(job["checkpoint_dir"])
    reporter.set_phase("evaluating")
    report = evaluate_checkpoint(checkpoint, out_dir=out_dir, overrides=target.get("overrides") or {})
    mlflow.set_tags(
        {"evaluated_model": version.name, "evaluated_version": str(version.version), "evaluated_run_id": version.run_id}
    )
    mlflow.log_metrics({k: v for k, v in report.summary().items() if isinstance(v, float)})
    for name in (REPORT, PLOT):
        if (out_dir / name).exists():
            mlflow.log_artifact(str(out_dir / name))
    return {
        "model_uri": target["model_uri"],
        "model_name": version.name,
        "model_version": str(version.version),
        "report": report.summary(),
    }


def _model_version(uri: str) -> Any:
    client = mlflow.MlflowClient()
    name_part = uri.removeprefix("models:/")
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, version = name_part.rsplit("/", 1)
    return client.get_model_version(name, version)


def _completed_epochs(path: Path | None) -> int:
    if path is None or not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


if __name__ == "__main__":
    sys.exit(main())
