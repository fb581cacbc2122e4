"""Progress reporting seams: the service hooks heartbeats, MLflow logging and cancellation here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class StepProgress:
    epoch: int  # 0-based epoch in progress
    epochs: int
    step: int  # global optimizer step, 1-based
    total_steps: int
    images_per_s: float
    metrics: dict[str, float]  # averages since the last report
    lr: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochSummary:
    epoch: int  # 0-based; `epoch + 1` epochs are complete
    epochs: int
    lr: float
    seconds: float  # training time of the epoch, warm-up included
    images_per_s: float  # natural images per second after the warm-up steps, each view counted (as bench/)
    train: dict[str, float]  # loss terms, clean/adversarial accuracy, positive/negative fractions
    val: dict[str, float] = field(default_factory=dict)  # clean_acc, robust_acc (when validated)
    warmup_seconds: float = 0.0  # the first steps of a process: compilation, CUDA-graph capture

    def as_dict(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "lr": self.lr,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup_seconds,
            "images_per_s": self.images_per_s,
            "train": self.train,
            "val": self.val,
        }


class Reporter(Protocol):
    def on_step(self, progress: StepProgress) -> None: ...

    def on_epoch_end(self, summary: EpochSummary) -> None: ...

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None: ...


class NullReporter:
    def on_step(self, progress: StepProgress) -> None:
        pass

    def on_epoch_end(self, summary: EpochSummary) -> None:
        pass

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None:
        pass


StopCheck = Callable[[], bool]


def never_stop() -> bool:
    return False
