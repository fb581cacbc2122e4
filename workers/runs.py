"""What an attempt runs: training (then the model logged to the job's MLflow run) or an evaluation
of a registered model. The stored spec is the exact config that runs; nothing is re-derived here."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from ascl.config import ExperimentConfig
from ascl.experiment import evaluate_checkpoint, load_classifier, run_experiment
from ascl.models import LogitsOnly
from ascl.run_files import BEST, CONFIG, LAST, PLOT, REPORT
from ascl.training.state import completed_epochs
from service.contracts import AttemptSpec, EvalResult, Phase, TrainResult
from service.jobs.spec import parse_stored
from workers.reporting import ServiceReporter

logger = logging.getLogger(__name__)
CHECKPOINT_ARTIFACT = "checkpoint"
CHECKPOINT_TAG = "ascl.checkpoint_sha256"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What every worker of an attempt passes to run_experiment."""

    config: ExperimentConfig
    run_dir: Path
    resume: Path | None  # the retried job's checkpoint
    resume_from: Path | None  # the same, unless this job's own run directory has a checkpoint

    @classmethod
    def of(cls, job: AttemptSpec) -> Inputs:
        run_dir = Path(job.checkpoint_dir)
        resume = Path(job.resume_checkpoint) if job.resume_checkpoint else None
        own = (run_dir / LAST).exists()
        return cls(parse_stored(job.spec), run_dir, resume, resume if resume and not own else None)


def train(job: AttemptSpec, reporter: ServiceReporter) -> TrainResult | None:
    inputs = Inputs.of(job)
    config, run_dir, resume = inputs.config, inputs.run_dir, inputs.resume
    resumed_from = completed_epochs(run_dir / LAST) or (completed_epochs(resume) if resume else 0)
    mlflow.log_params(flatten(config.to_dict()))
    mlflow.set_tags(
        {
            "threat_model": f"{config.attack.norm} eps={config.eval_eps:g}",
            "objective": config.objective.kind,
            "dataset": config.data.dataset,
            "model": config.model.arch,
        }
    )
    result = run_experiment(
        config,
        run_dir=run_dir,
        reporter=reporter,
        should_stop=reporter.should_stop,
        resume_from=inputs.resume_from,
    )
    if result.stopped:
        return None
    reporter.set_phase(Phase.LOGGING_MODEL)
    if not reporter.still_current():  # a superseded attempt (say, on a node declared lost) logs no model
        return None
    test = result.test or {}
    final = {f"test_{k}": v for k, v in test.items() if isinstance(v, float)}
    if result.positive_fraction is not None and result.negative_fraction is not None:
        final |= {"positive_fraction": result.positive_fraction, "negative_fraction": result.negative_fraction}
    mlflow.log_metrics(final)
    for name in (CONFIG, REPORT, PLOT):
        if (run_dir / name).exists():
            mlflow.log_artifact(str(run_dir / name))
    chosen = run_dir / str(test.get("checkpoint") or LAST)
    mlflow.log_artifact(str(chosen), artifact_path=CHECKPOINT_ARTIFACT)
    return TrainResult(
        model_uri=_log_model_once(chosen),
        checkpoint=chosen.name,
        test=test,
        best_epoch=result.best_epoch,
        best_val_robust_acc=result.best_val_robust_acc,
        epochs_completed=result.epochs_completed,
        resumed_from_epoch=resumed_from,
        positive_fraction=result.positive_fraction,
        negative_fraction=result.negative_fraction,
        seconds=result.seconds,
    )


def follow(job: AttemptSpec) -> None:
    """A data-parallel worker other than rank 0: it trains its share and leaves every file, report
    and MLflow call to rank 0 (which also decides when to stop)."""
    inputs = Inputs.of(job)
    run_experiment(inputs.config, run_dir=inputs.run_dir, resume_from=inputs.resume_from)


def _log_model_once(checkpoint: Path) -> str:
    """The classifier as an MLflow model (logits out, with a signature). An earlier attempt of the
    same job that logged this very checkpoint but could not report it is reused, not logged twice."""
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    run = mlflow.active_run()
    assert run is not None, "the attempt logs inside its job's run"
    for logged in mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    ):
        if logged.tags.get(CHECKPOINT_TAG) == digest:
            logger.info("model.reused model_id=%s (logged by an earlier attempt)", logged.model_id)
            return str(logged.model_uri)
    model, _, data = load_classifier(checkpoint, device="cpu")
    example = data.test.images[:2].float().div(255.0)
    serving = LogitsOnly(model).eval()
    with torch.no_grad():
        output = serving(example).numpy()
    info = mlflow.pytorch.log_model(
        serving,
        name="model",
        signature=infer_signature(example.numpy(), output),
        input_example=example.numpy().astype(np.float32),
        export_model=False,
        tags={CHECKPOINT_TAG: digest},
        # stated, not inferred: inference loads the model again in a fresh interpreter (seconds a job)
        pip_requirements=[
            *mlflow.pytorch.get_default_pip_requirements(),
            f"numpy=={np.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )
    return str(info.model_uri)


def evaluate(job: AttemptSpec) -> EvalResult:
    """Evaluate the target's checkpoint with exactly the stored spec (resolved at submission)."""
    target = job.target
    assert target is not None, "an eval job always has a target"
    assert target.resolved, "an eval job starts once its model version is known"
    local = Path(mlflow.artifacts.download_artifacts(run_id=target.run_id, artifact_path=CHECKPOINT_ARTIFACT))
    checkpoint = next(iter(sorted(local.glob("*.pt"), key=lambda p: p.name != BEST)))
    out_dir = Path(job.checkpoint_dir)
    config = parse_stored(job.spec)
    report = evaluate_checkpoint(checkpoint, out_dir=out_dir, device=config.device, overrides=every_field(config))
    mlflow.set_tags(
        {
            "evaluated_model": target.model_name,
            "evaluated_version": target.model_version,
            "evaluated_run_id": target.run_id,
        }
    )
    mlflow.log_metrics({k: v for k, v in report.summary().items() if isinstance(v, float)})
    for name in (CONFIG, REPORT, PLOT):
        if (out_dir / name).exists():
            mlflow.log_artifact(str(out_dir / name))
    return EvalResult(
        model_uri=target.model_uri,
        model_name=target.model_name,
        model_version=target.model_version,
        report=report.summary(),
    )


def every_field(config: ExperimentConfig) -> dict[str, Any]:
    """The config as dotted overrides of every field: applied to the checkpoint's own config, they
    give back exactly `config`."""
    return {path: json.loads(value) for path, value in flatten(config.to_dict(), as_json=True).items()}


def flatten(data: dict[str, Any], prefix: str = "", *, as_json: bool = False) -> dict[str, str]:
    """{'train': {'epochs': 3}} → {'train.epochs': '3'}; lists as JSON (all values JSON with as_json)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.", as_json=as_json)
        elif as_json or isinstance(value, list | tuple):
            flat[f"{prefix}{key}"] = json.dumps(value)
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat
