"""One training epoch over a `Training`'s step, with metrics, progress and stop checks.

Metrics are accumulated on the device and read back only every `log_every` steps, so the GPU is
never synchronised per step. A non-finite loss is detected at those points and at the epoch end,
before any checkpoint is written, and stops the run with NonFiniteLossError. The first steps of a
process may compile or capture the step: their time is reported apart (`warmup_seconds`), and the
epoch's images/s counts only the steps after them, as the benchmarks do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ascl.config import OptimConfig
from ascl.errors import NonFiniteLossError
from ascl.losses import fractions_from_counts
from ascl.runtime import cudnn_autotune
from ascl.training.assembly import Training
from ascl.training.callbacks import Reporter, StepProgress, StopCheck
from ascl.training.objectives import SELECTION, StepOutput
from ascl.training.optim import learning_rate, set_learning_rate
from ascl.training.workers import Workers


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochPlan:
    epoch: int  # 0-based
    epochs: int
    steps_per_epoch: int
    optim: OptimConfig
    log_every: int


@dataclass(frozen=True, slots=True)
class EpochResult:
    metrics: dict[str, float]
    images: int  # natural images trained on after the warm-up steps, over all workers, each view counted
    seconds: float  # the whole epoch, warm-up included
    warmup_seconds: float  # steps that compiled or captured the step (first epoch of a process)
    stopped: bool  # the stop check asked to stop before the epoch ended
    selection_counts: list[float] | None  # summed over the epoch and the workers, for the run aggregate
    lr: float  # the last step's learning rate

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds - self.warmup_seconds, 1e-9)


class _Accumulator:
    """Device-side running sums of the packed step metrics."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.names: tuple[str, ...] = ()
        self.images = 0
        self.batches = 0

    def add(self, output: StepOutput, images: int) -> None:
        self.sums = output.values.clone() if self.sums is None else self.sums + output.values
        self.names = output.names
        self.images += images
        self.batches += 1

    def read(self, workers: Workers) -> tuple[dict[str, float], list[float] | None]:
        """(metrics, selection counts), summed over the workers; a device synchronisation."""
        if self.sums is None:
            return {}, None
        counts = torch.tensor([self.images, self.batches], dtype=torch.float64, device=self.sums.device)
        *values, images, batches = workers.sum(torch.cat([self.sums, counts])).tolist()
        totals = dict(zip(self.names, values, strict=True))
        metrics = {n: v / batches for n, v in totals.items() if not n.startswith("correct_") and n not in SELECTION}
        for kind, name in (("nat", "clean_acc"), ("adv", "adv_acc")):
            if f"correct_{kind}" in totals:
                metrics[name] = totals[f"correct_{kind}"] / images
        selection = [totals[n] for n in SELECTION] if SELECTION[0] in totals else None
        if selection is not None:
            metrics["pos_frac"], metrics["neg_frac"] = fractions_from_counts(torch.tensor(selection))
        return metrics, selection


def train_epoch(
    training: Training,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    plan: EpochPlan,
    *,
    generator: torch.Generator,
    reporter: Reporter,
    should_stop: StopCheck,
) -> EpochResult:
    """Run `plan.epoch` over `batches` (global batches; each worker trains on its slice), with cuDNN's
    autotuner as the config says."""
    with cudnn_autotune(training.config.train.cudnn_benchmark):
        training.model.train()
        workers = training.workers
        epoch_sums, window = _Accumulator(), _Accumulator()
        warmup = training.step.warmup_steps
        start = window_start = warm_end = time.perf_counter()
        stopped, lr, steady_images = False, float("nan"), 0
        for step, (x, y) in enumerate(batches):
            if _stop_now(workers, should_stop, step, plan.log_every):
                stopped = True
                break
            lr = learning_rate(
                plan.optim, epoch=plan.epoch, step=step, steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs
            )
            set_learning_rate(training.optimizer, lr)
            output = training.run_step(x, y, generator)
            for accumulator in (epoch_sums, window):
                accumulator.add(output, x.shape[0] // workers.world)
            if step >= warmup:
                steady_images += x.shape[0]
            elif step == warmup - 1:  # the one-time work is done: time it apart
                _synchronize(training.device)
                warm_end = window_start = time.perf_counter()
            if (step + 1) % plan.log_every == 0:
                metrics, _ = window.read(workers)
                _check_finite(metrics, plan.epoch, step)
                now = time.perf_counter()
                if workers.is_main:
                    reporter.on_step(
                        StepProgress(
                            epoch=plan.epoch,
                            epochs=plan.epochs,
                            step=plan.epoch * plan.steps_per_epoch + step + 1,
                            total_steps=plan.epochs * plan.steps_per_epoch,
                            images_per_s=window.images * workers.world / max(now - window_start, 1e-9),
                            metrics=metrics,
                            lr=lr,
                        )
                    )
                window, window_start = _Accumulator(), now
        metrics, selection = epoch_sums.read(workers)
        _synchronize(training.device)
        seconds = time.perf_counter() - start
        _check_finite(metrics, plan.epoch, plan.steps_per_epoch)
        return EpochResult(
            metrics=metrics,
            images=steady_images,
            seconds=seconds,
            warmup_seconds=warm_end - start,
            stopped=stopped,
            selection_counts=selection,
            lr=lr,
        )


def _stop_now(workers: Workers, should_stop: StopCheck, step: int, log_every: int) -> bool:
    """Alone: ask before every step. Data-parallel: rank 0 asks at the reporting points and every
    worker follows, so all of them stop before the same step."""
    if not workers.distributed:
        return should_stop()
    if step % log_every:
        return False
    return workers.agree(workers.is_main and should_stop())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_finite(metrics: dict[str, float], epoch: int, step: int) -> None:
    if "loss" in metrics and not math.isfinite(metrics["loss"]):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        raise NonFiniteLossError(
            f"non-finite training loss in epoch {epoch} by step {step + 1} ({terms}); "
            f"try a lower optim.lr or train.precision=fp32"
        )
