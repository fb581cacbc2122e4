"""The library's composition root: config → data, model, attack, objective → epochs → evaluation.

A run directory holds `config.json`, `last.pt` (every epoch, atomic), `best.pt` (best validation
robust accuracy), and after training `report.json` and `eps_sweep.png`. Running again on the same
directory resumes from `last.pt` exactly.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ascl.attacks import Pgd
from ascl.config import EvalConfig, ExperimentConfig
from ascl.data import DataBundle, Split, build_data, train_batches
from ascl.errors import CheckpointError
from ascl.evaluation import RobustnessReport, attack_correct, eval_pgd, evaluate_robustness, plot_eps_sweep
from ascl.evaluation.robust import predictions_correct
from ascl.losses import fractions_from_counts
from ascl.models import RobustClassifier, build_model
from ascl.runtime import autocast_dtype, epoch_generator, resolve_device, seed_global
from ascl.training.callbacks import EpochSummary, NullReporter, Reporter, StopCheck, never_stop
from ascl.training.checkpoint import load_checkpoint, save_checkpoint
from ascl.training.loop import train_epoch
from ascl.training.objectives import Objective
from ascl.training.optim import build_optimizer

logger = logging.getLogger(__name__)

LAST, BEST, REPORT, PLOT = "last.pt", "best.pt", "report.json", "eps_sweep.png"


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


def build_classifier(config: ExperimentConfig, data: DataBundle) -> RobustClassifier:
    return build_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, mean=data.mean, std=data.std
    )


def run_experiment(
    config: ExperimentConfig,
    *,
    run_dir: Path,
    reporter: Reporter | None = None,
    should_stop: StopCheck = never_stop,
    resume_from: Path | None = None,
) -> ExperimentResult:
    """Train (resuming from `resume_from`, else from `run_dir/last.pt` if present) and evaluate."""
    started = time.perf_counter()
    reporter = reporter or NullReporter()
    device = resolve_device(config.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    data = build_data(config.data, device)
    torch.manual_seed(config.seed)  # the initial weights
    model = build_classifier(config, data).to(device)
    dtype = autocast_dtype(config.train.precision, device)
    if device.type == "cuda" and config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    state = _resume_state(config, resume_from or run_dir / LAST, model, optimizer, device)
    # compiling a Module gives an OptimizedModule (a Module); torch types it as a plain callable
    trained = (
        model if config.train.compile == "none" else cast(nn.Module, torch.compile(model, mode=config.train.compile))
    )
    objective = Objective(
        config.objective,
        Pgd.from_config(config.attack, autocast_dtype=dtype) if config.objective.kind != "standard" else None,
        dtype,
    )
    per_step = config.train.batch_size
    steps_per_epoch = len(data.train) // per_step if config.train.drop_last else -(-len(data.train) // per_step)
    if steps_per_epoch == 0:
        raise ValueError(f"train.batch_size {per_step} is larger than the {len(data.train)} training images")

    stopped = False
    for epoch in range(state["epoch"], config.train.epochs):
        seed_global(config.seed, epoch)
        generator = epoch_generator(config.seed, epoch, device)
        batches = train_batches(
            data.train,
            batch_size=per_step,
            views=config.objective.views,
            drop_last=config.train.drop_last,
            padding=config.data.crop_padding,
            hflip=config.data.hflip,
            generator=generator,
        )
        result = train_epoch(
            trained,
            objective,
            optimizer,
            batches,
            epoch=epoch,
            epochs=config.train.epochs,
            steps_per_epoch=steps_per_epoch,
            optim_config=config.optim,
            generator=generator,
            reporter=reporter,
            should_stop=should_stop,
            log_every=config.train.log_every,
            post_step_bn_forwards=config.train.post_step_bn_forwards,
        )
        if result.stopped:
            stopped = True
            logger.info("train.stopped epoch=%d (the last complete epoch's checkpoint is kept)", epoch)
            break
        if result.selection_counts is not None:
            state["selection"] = [
                a + b for a, b in zip(state["selection"], result.selection_counts.tolist(), strict=True)
            ]
        val = _validate(config, model, data.val) if _validates(config, epoch) else {}
        summary = EpochSummary(
            epoch=epoch,
            epochs=config.train.epochs,
            lr=optimizer.param_groups[0]["lr"],
            seconds=result.seconds,
            images_per_s=result.images / max(result.seconds, 1e-9),
            train=result.metrics,
            val=val,
        )
        state["history"].append(summary.as_dict())
        is_best = bool(val) and (state["best_acc"] is None or val["robust_acc"] >= state["best_acc"])
        if is_best:
            state["best_acc"], state["best_epoch"] = val["robust_acc"], epoch
        state["epoch"] = epoch + 1
        _save(run_dir, model, optimizer, config, state, is_best, reporter)
        reporter.on_epoch_end(summary)
        logger.info("train.epoch_end epoch=%d %s", epoch, json.dumps(summary.as_dict()))

    pos, neg = fractions_from_counts(torch.tensor(state["selection"])) if any(state["selection"]) else (None, None)
    test, test_last = (None, None) if stopped else _final_evaluation(config, model, data, run_dir, state)
    return ExperimentResult(
        name=config.name,
        run_dir=str(run_dir),
        device=str(device),
        epochs_completed=state["epoch"],
        stopped=stopped,
        best_epoch=state["best_epoch"],
        best_val_robust_acc=state["best_acc"],
        positive_fraction=pos,
        negative_fraction=neg,
        seconds=time.perf_counter() - started,
        history=state["history"],
        test=test,
        test_last=test_last,
    )


def _validates(config: ExperimentConfig, epoch: int) -> bool:
    return (epoch + 1) % config.train.validate_every == 0 or epoch + 1 == config.train.epochs


def _validate(config: ExperimentConfig, model: nn.Module, split: Split) -> dict[str, float]:
    """Clean and PGD-k accuracy on the validation split (eval mode), for checkpoint selection."""
    batch = config.eval.batch_size
    clean = predictions_correct(model, split, batch_size=batch)
    pgd = eval_pgd(
        norm=config.attack.norm, eps=config.eval_eps, step_size=config.eval_step_size, steps=config.eval.val_steps
    )
    generator = torch.Generator(device=split.labels.device).manual_seed(config.seed)
    robust = attack_correct(model, split, pgd, batch_size=batch, generator=generator) & clean
    return {"clean_acc": float(clean.float().mean()), "robust_acc": float(robust.float().mean())}


def _resume_state(
    config: ExperimentConfig, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    fresh: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "best_acc": None,
        "best_epoch": None,
        "selection": [0.0, 0.0, 0.0, 0.0],
    }
    if not path.is_file():
        return fresh
    checkpoint = load_checkpoint(path, map_location=device)
    saved = ExperimentConfig.from_dict(checkpoint["config"])
    if _training_identity(saved) != _training_identity(config):
        raise CheckpointError(f"{path} was written by a different experiment; use another run directory")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    logger.info("train.resumed path=%s epoch=%d", path, checkpoint["epoch"])
    return {key: checkpoint[key] for key in fresh}


def _training_identity(config: ExperimentConfig) -> dict[str, Any]:
    """What must match to resume: everything but the run length, evaluation and speed options."""
    identity = config.to_dict()
    for volatile in ("eval", "name", "device"):
        identity.pop(volatile)
    for volatile in ("epochs", "precision", "compile", "log_every", "channels_last"):
        identity["train"].pop(volatile)
    return identity


def _save(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: ExperimentConfig,
    state: dict[str, Any],
    is_best: bool,
    reporter: Reporter,
) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": config.to_dict(), **state}
    save_checkpoint(run_dir / LAST, payload)
    reporter.on_checkpoint(run_dir / LAST, epoch=state["epoch"] - 1, is_best=False)
    if is_best:
        save_checkpoint(run_dir / BEST, payload)
        reporter.on_checkpoint(run_dir / BEST, epoch=state["epoch"] - 1, is_best=True)


def _final_evaluation(
    config: ExperimentConfig, model: RobustClassifier, data: DataBundle, run_dir: Path, state: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, float] | None]:
    if state["epoch"] == 0:
        return None, None
    last_weights = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = BEST if config.eval.checkpoint == "best" and (run_dir / BEST).is_file() else LAST
    model.load_state_dict(load_checkpoint(run_dir / chosen, map_location=data.test.labels.device)["model"])
    report = evaluate_split(config, model, data.test)
    write_report(report, run_dir, title=f"{config.name} ({chosen})")
    test_last = None
    if chosen == BEST and state["best_epoch"] != state["epoch"] - 1:
        model.load_state_dict(last_weights)
        quick = evaluate_robustness(
            model,
            data.test,
            norm=config.attack.norm,
            eps=config.eval_eps,
            step_size=config.eval_step_size,
            pgd_steps=config.eval.pgd_steps,
            batch_size=config.eval.batch_size,
            seed=config.seed,
        )
        test_last = {"clean_acc": quick.clean_acc, "pgd_acc": quick.pgd_acc or 0.0}
    return {"checkpoint": chosen, **report.summary()}, test_last


def evaluate_split(config: ExperimentConfig, model: nn.Module, split: Split) -> RobustnessReport:
    ev: EvalConfig = config.eval
    return evaluate_robustness(
        model,
        split,
        norm=config.attack.norm,
        eps=config.eval_eps,
        step_size=config.eval_step_size,
        pgd_steps=ev.pgd_steps,
        pgd_restarts=ev.pgd_restarts,
        autoattack=ev.autoattack,
        autoattack_examples=ev.autoattack_examples,
        eps_sweep=ev.eps_sweep,
        sweep_steps=ev.sweep_steps,
        batch_size=ev.batch_size,
        seed=config.seed,
    )


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
    config = ExperimentConfig.from_dict(checkpoint["config"]).with_overrides({"device": device, **(overrides or {})})
    torch_device = resolve_device(config.device)
    data = build_data(config.data, torch_device)
    model = build_classifier(config, data)
    model.load_state_dict(checkpoint["model"])
    return model.to(torch_device).eval(), config, data


def evaluate_checkpoint(
    checkpoint_path: Path, *, out_dir: Path | None = None, device: str = "auto", overrides: dict[str, Any] | None = None
) -> RobustnessReport:
    """Evaluate a saved model on its test split; `overrides` may change e.g. eval.* or data.*."""
    model, config, data = load_classifier(checkpoint_path, device=device, overrides=overrides)
    report = evaluate_split(config, model, data.test)
    if out_dir is not None:
        write_report(report, out_dir, title=f"{config.name} ({checkpoint_path.name})")
    return report
