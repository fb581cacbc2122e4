"""One training epoch: the only place that calls backward() and step().

Metrics are accumulated on the device and read back only every `log_every` steps, so the GPU is
never synchronised per step. A non-finite loss is detected at those points and at the epoch end,
before any checkpoint is written, and stops the run with NonFiniteLossError."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ascl.config import OptimConfig
from ascl.errors import NonFiniteLossError
from ascl.losses import fractions_from_counts
from ascl.training.callbacks import Reporter, StepProgress, StopCheck
from ascl.training.objectives import Objective, StepOutput
from ascl.training.optim import learning_rate, set_learning_rate


@dataclass(frozen=True, slots=True)
class EpochResult:
    metrics: dict[str, float]
    images: int
    seconds: float
    stopped: bool  # the stop check asked to stop before the epoch ended
    selection_counts: torch.Tensor | None  # summed over the epoch, for the run-level aggregate


class _Accumulator:
    """Device-side running sums of the step metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.selection: torch.Tensor | None = None
        self.images = 0
        self.batches = 0

    def add(self, name: str, value: torch.Tensor) -> None:
        self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()

    def read(self) -> dict[str, float]:
        values = {name: float(total) for name, total in self.sums.items()}
        metrics = {name: values[name] / self.batches for name in values if name not in ("correct_nat", "correct_adv")}
        for kind in ("nat", "adv"):
            if f"correct_{kind}" in values:
                metrics[f"{'clean' if kind == 'nat' else 'adv'}_acc"] = values[f"correct_{kind}"] / self.images
        if self.selection is not None:
            metrics["pos_frac"], metrics["neg_frac"] = fractions_from_counts(self.selection)
        return metrics


def train_epoch(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epoch: int,
    epochs: int,
    steps_per_epoch: int,
    optim_config: OptimConfig,
    generator: torch.Generator,
    reporter: Reporter,
    should_stop: StopCheck,
    log_every: int,
    post_step_bn_forwards: bool,
) -> EpochResult:
    model.train()
    epoch_sums, window = _Accumulator(), _Accumulator()
    start = window_start = time.perf_counter()
    stopped = False
    for step, (x, y) in enumerate(batches):
        if should_stop():
            stopped = True
            break
        lr = learning_rate(optim_config, epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, epochs=epochs)
        set_learning_rate(optimizer, lr)
        output = objective(model, x, y, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        if post_step_bn_forwards and output.x_adv is not None:
            with torch.no_grad():  # the authors' logging forwards: they only move BatchNorm statistics
                model(x)
                model(output.x_adv)
        for accumulator in (epoch_sums, window):
            _record(accumulator, output, x.shape[0])
        if (step + 1) % log_every == 0:
            metrics = window.read()
            _check_finite(metrics, epoch, step)
            now = time.perf_counter()
            reporter.on_step(
                StepProgress(
                    epoch=epoch,
                    step=epoch * steps_per_epoch + step + 1,
                    total_steps=epochs * steps_per_epoch,
                    images_per_s=window.images / max(now - window_start, 1e-9),
                    metrics=metrics,
                    lr=lr,
                )
            )
            window, window_start = _Accumulator(), now
    seconds = time.perf_counter() - start
    metrics = epoch_sums.read() if epoch_sums.batches else {}
    _check_finite(metrics, epoch, steps_per_epoch)
    return EpochResult(metrics, epoch_sums.images, seconds, stopped, epoch_sums.selection)


def _record(accumulator: _Accumulator, output: StepOutput, images: int) -> None:
    accumulator.add("loss", output.loss.detach().float())
    for name, value in output.terms.items():
        accumulator.add(name, value.float())
    accumulator.add("correct_nat", output.correct_nat)
    if output.correct_adv is not None:
        accumulator.add("correct_adv", output.correct_adv)
    if output.selection_counts is not None:
        counts = output.selection_counts
        accumulator.selection = counts if accumulator.selection is None else accumulator.selection + counts
    accumulator.images += images
    accumulator.batches += 1


def _check_finite(metrics: dict[str, float], epoch: int, step: int) -> None:
    if "loss" in metrics and not math.isfinite(metrics["loss"]):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        raise NonFiniteLossError(
            f"non-finite training loss in epoch {epoch} by step {step + 1} ({terms}); "
            f"try a lower optim.lr or train.precision=fp32"
        )
