"""The library's composition root: config → training (ascl.training.assembly) → epochs → evaluation.

A run directory holds the files named in ascl.run_files. Running again on the same directory
resumes from `last.pt` exactly; running a finished run again returns its stored result.

In a data-parallel run (a torch.distributed process group is initialised, ascl.training.workers)
every worker trains; rank 0 alone validates, writes files, reports and runs the final evaluation,
and the other workers return a result without `test` once training is done.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ascl.config import ExperimentConfig, check_same_model
from ascl.data import DataBundle, Split, build_data
from ascl.errors import CheckpointError
from ascl.evaluation import AttackProgress, EvalPlan, RobustnessReport, evaluate_robustness, plot_eps_sweep
from ascl.losses import fractions_from_counts
from ascl.models import RobustClassifier
from ascl.run_files import BEST, CONFIG, LAST, PLOT, REPORT, RESULT
from ascl.runtime import cpu_threads, epoch_generator, resolve_device, seed_global
from ascl.training.assembly import Training, build_classifier, build_training
from ascl.training.callbacks import EpochSummary, NullReporter, Reporter, StopCheck, never_stop
from ascl.training.checkpoint import load_checkpoint
from ascl.training.loop import EpochPlan, train_epoch
from ascl.training.state import TrainingState, read_resumable, restore, save_state
from ascl.training.workers import Workers

__all__ = [  # the run-file names are re-exported for callers that import them from here
    "BEST",
    "LAST",
    "PLOT",
    "REPORT",
    "ExperimentResult",
    "evaluate_checkpoint",
    "load_classifier",
    "run_experiment",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentResult:
    name: str
    run_dir: str
    device: str
    epochs_completed: int
    stopped: bool  # the stop check ended training early; no final evaluation was run
    best_epoch: int | None
    best_val_robust_acc: float | None
    positive_fraction: float | None  # ratio of sums over all training steps (ASCL_SPEC §9)
    negative_fraction: float | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None  # report summary for the selected checkpoint
    test_last: dict[str, float] | None = None  # clean / PGD of the last epoch when it is not the best

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_experiment(
    config: ExperimentConfig,
    *,
    run_dir: Path,
    reporter: Reporter | None = None,
    should_stop: StopCheck = never_stop,
    resume_from: Path | None = None,
    eval_progress: AttackProgress | None = None,
) -> ExperimentResult:
    """Train (resuming from `resume_from`, else from `run_dir/last.pt` if present) and evaluate.
    `eval_progress` follows the evaluation attacks (validation excluded)."""
    started = time.perf_counter()
    with cpu_threads(config.cpu_threads):
        device = resolve_device(config.device)
        workers = Workers.current(device)
        main = workers.is_main
        finished = _finished_result(run_dir, config) if main else None
        if workers.from_main(finished is not None):
            logger.info("train.complete run_dir=%s: returning the stored result", run_dir)
            return finished or _empty_result(config, run_dir, device)
        checkpoint = None
        if main:  # before anything is written: a refused checkpoint leaves the run directory as it was
            checkpoint = read_resumable(resume_from or run_dir / LAST, config, required=resume_from is not None)
            run_dir.mkdir(parents=True, exist_ok=True)  # before the data: a path that cannot be written fails first
        data = build_data(config.data, device)
        training = build_training(config, data, device)
        if main:
            (run_dir / CONFIG).write_text(config.to_json())
        state = restore(training.workers.from_main(checkpoint), training.model, training.optimizer)
        stopped = _train(training, data, state, run_dir, reporter or NullReporter(), should_stop)
        if main and not stopped and resume_from is not None and not (run_dir / LAST).exists():
            _adopt(resume_from, run_dir, training, state, reporter or NullReporter())
        result = _result(config, run_dir, device, state, stopped, time.perf_counter() - started)
        if stopped or not main or state.epoch == 0:
            return result
        test, test_last = _final_evaluation(config, training.model, data, run_dir, state, eval_progress)
        result = replace(result, test=test, test_last=test_last, seconds=time.perf_counter() - started)
        _store_result(run_dir, config, result)
        return result


def _train(
    training: Training,
    data: DataBundle,
    state: TrainingState,
    run_dir: Path,
    reporter: Reporter,
    should_stop: StopCheck,
) -> bool:
    """Epochs from state.epoch to the end; whether the stop check ended them early."""
    config, main = training.config, training.workers.is_main
    for epoch in range(state.epoch, config.train.epochs):
        seed_global(config.seed, epoch)
        generator = epoch_generator(config.seed, epoch, training.device)
        plan = EpochPlan(
            epoch=epoch,
            epochs=config.train.epochs,
            steps_per_epoch=training.steps_per_epoch,
            optim=config.optim,
            log_every=config.train.log_every,
        )
        batches = training.epoch_batches(data.train, generator)
        result = train_epoch(training, batches, plan, generator=generator, reporter=reporter, should_stop=should_stop)
        if result.stopped:
            logger.info("train.stopped epoch=%d (the last complete epoch's checkpoint is kept)", epoch)
            return True
        if result.selection_counts is not None:
            state.add_selection(result.selection_counts)
        val = _validate(config, training.model, data.val) if main and _validates(config, epoch) else {}
        summary = EpochSummary(
            epoch=epoch,
            epochs=config.train.epochs,
            lr=result.lr,
            seconds=result.seconds,
            warmup_seconds=result.warmup_seconds,
            images_per_s=result.images_per_s,
            train=result.metrics,
            val=val,
        )
        state.history.append(summary.as_dict())
        is_best = bool(val) and state.record_validation(epoch, val["robust_acc"])
        state.epoch = epoch + 1
        if main:
            _save(run_dir, training, state, is_best, reporter)
            reporter.on_epoch_end(summary)
            logger.info("train.epoch_end epoch=%d %s", epoch, json.dumps(summary.as_dict()))
    return False


def _validates(config: ExperimentConfig, epoch: int) -> bool:
    return (epoch + 1) % config.train.validate_every == 0 or epoch + 1 == config.train.epochs


def _validate(config: ExperimentConfig, model: nn.Module, split: Split) -> dict[str, float]:
    """Clean and PGD-k accuracy on the validation split (eval mode), for checkpoint selection."""
    plan = replace(
        EvalPlan.from_config(config), pgd_steps=config.eval.val_steps, pgd_restarts=1, autoattack="none", eps_sweep=()
    )
    report = evaluate_robustness(model, split, plan)
    return {"clean_acc": report.clean_acc, "robust_acc": report.robust_acc}


def _save(run_dir: Path, training: Training, state: TrainingState, is_best: bool, reporter: Reporter) -> None:
    model, optimizer, config = training.model, training.optimizer, training.config
    save_state(run_dir / LAST, model, optimizer, config, state)
    reporter.on_checkpoint(run_dir / LAST, epoch=state.epoch - 1, is_best=False)
    if is_best:
        save_state(run_dir / BEST, model, optimizer, config, state)
        reporter.on_checkpoint(run_dir / BEST, epoch=state.epoch - 1, is_best=True)


def _adopt(resume_from: Path, run_dir: Path, training: Training, state: TrainingState, reporter: Reporter) -> None:
    """Resumed with no epoch left to train: the checkpoint (and its run's best, when there is one)
    become this run's, so that it evaluates and reports like any finished run."""
    logger.info("train.nothing_left epoch=%d: adopting %s", state.epoch, resume_from)
    save_state(run_dir / LAST, training.model, training.optimizer, training.config, state)
    reporter.on_checkpoint(run_dir / LAST, epoch=state.epoch - 1, is_best=False)
    best = resume_from.parent / BEST
    if best.exists() and state.best_epoch is not None:
        shutil.copyfile(best, run_dir / BEST)
        reporter.on_checkpoint(run_dir / BEST, epoch=state.best_epoch, is_best=True)


def _result(
    config: ExperimentConfig, run_dir: Path, device: torch.device, state: TrainingState, stopped: bool, seconds: float
) -> ExperimentResult:
    pos, neg = fractions_from_counts(torch.tensor(state.selection)) if any(state.selection) else (None, None)
    return ExperimentResult(
        name=config.name,
        run_dir=str(run_dir),
        device=str(device),
        epochs_completed=state.epoch,
        stopped=stopped,
        best_epoch=state.best_epoch,
        best_val_robust_acc=state.best_acc,
        positive_fraction=pos,
        negative_fraction=neg,
        seconds=seconds,
        history=state.history,
    )


def _empty_result(config: ExperimentConfig, run_dir: Path, device: torch.device) -> ExperimentResult:
    """A non-main worker's result for a run that was already finished."""
    return _result(config, run_dir, device, TrainingState(epoch=config.train.epochs), False, 0.0)


def _finished_result(run_dir: Path, config: ExperimentConfig) -> ExperimentResult | None:
    """The stored result of this very config's finished run, if there is one."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if stored.get("config") != config.to_dict():
        return None
    return ExperimentResult(**stored["result"])


def _store_result(run_dir: Path, config: ExperimentConfig, result: ExperimentResult) -> None:
    (run_dir / RESULT).write_text(json.dumps({"config": config.to_dict(), "result": result.as_dict()}, indent=2))


def _final_evaluation(
    config: ExperimentConfig,
    model: RobustClassifier,
    data: DataBundle,
    run_dir: Path,
    state: TrainingState,
    progress: AttackProgress | None,
) -> tuple[dict[str, Any], dict[str, float] | None]:
    last_weights = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = BEST if config.eval.checkpoint == "best" and (run_dir / BEST).is_file() else LAST
    model.load_state_dict(load_checkpoint(run_dir / chosen, map_location=data.test.labels.device)["model"])
    report = evaluate_robustness(model, data.test, EvalPlan.from_config(config), progress=progress)
    write_report(report, run_dir, title=f"{config.name} ({chosen})")
    test_last = None
    if chosen == BEST and state.best_epoch != state.epoch - 1:
        model.load_state_dict(last_weights)
        plan = replace(EvalPlan.from_config(config), autoattack="none", eps_sweep=())
        quick = evaluate_robustness(model, data.test, plan, progress=progress)
        test_last = {"clean_acc": quick.clean_acc, "pgd_acc": quick.pgd_acc or 0.0}
    return {"checkpoint": chosen, **report.summary()}, test_last


def write_report(report: RobustnessReport, out_dir: Path, *, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT).write_text(json.dumps(report.as_dict(), indent=2))
    if report.eps_sweep:
        plot_eps_sweep(report, out_dir / PLOT, title=title)


def load_classifier(
    checkpoint_path: Path, *, device: str = "auto", overrides: dict[str, Any] | None = None
) -> tuple[RobustClassifier, ExperimentConfig, DataBundle]:
    """A trained model in eval mode, its config (with overrides) and its data, from a checkpoint."""
    checkpoint = load_checkpoint(checkpoint_path)
    trained = ExperimentConfig.from_dict(checkpoint["config"])
    config = trained.with_overrides({"device": device, **(overrides or {})})
    check_same_model(trained, config)
    torch_device = resolve_device(config.device)
    data = build_data(config.data, torch_device)
    model = build_classifier(config, data)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        if "size mismatch" not in str(error):
            raise
        # the data's classes or channels differ from those it was trained on
        raise CheckpointError(
            f"{checkpoint_path} does not fit {config.data.dataset}'s {data.num_classes} classes and "
            f"{data.in_channels} channels: evaluate it on data shaped like its training data"
        ) from None
    model = model.to(torch_device)
    if torch_device.type == "cuda" and config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), config, data


def evaluate_checkpoint(
    checkpoint_path: Path,
    *,
    out_dir: Path | None = None,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    progress: AttackProgress | None = None,
) -> RobustnessReport:
    """Evaluate a saved model on its test split; `overrides` may change e.g. eval.* or data.*."""
    model, config, data = load_classifier(checkpoint_path, device=device, overrides=overrides)
    with cpu_threads(config.cpu_threads):
        report = evaluate_robustness(model, data.test, EvalPlan.from_config(config), progress=progress)
    if out_dir is not None:
        write_report(report, out_dir, title=f"{config.name} ({checkpoint_path.name})")
    return report
