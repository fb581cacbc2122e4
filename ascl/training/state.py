"""What a run carries from epoch to epoch, and its checkpoint: the weights, the optimizer, the
config and a `TrainingState`. The learning rate is a pure function of the epoch and every epoch's
randomness is seeded from (seed, epoch) (ascl.runtime), so these are all that an exact resume needs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ascl.config import ExperimentConfig
from ascl.errors import CheckpointError
from ascl.training.checkpoint import load_checkpoint, save_checkpoint
from ascl.training.optim import load_optimizer_state

logger = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class TrainingState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochSummary.as_dict() per epoch
    best_acc: float | None = None  # best validation robust accuracy so far
    best_epoch: int | None = None
    selection: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # summed selection counts

    def add_selection(self, counts: list[float]) -> None:
        self.selection = [a + b for a, b in zip(self.selection, counts, strict=True)]

    def record_validation(self, epoch: int, robust_acc: float) -> bool:
        """Whether `epoch` is the new best (ties go to the later epoch, as the authors' >=)."""
        if self.best_acc is not None and robust_acc < self.best_acc:
            return False
        self.best_acc, self.best_epoch = robust_acc, epoch
        return True

    def as_checkpoint_fields(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "selection": self.selection,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TrainingState:
        return cls(
            epoch=int(checkpoint["epoch"]),
            history=list(checkpoint["history"]),
            best_acc=checkpoint["best_acc"],
            best_epoch=checkpoint["best_epoch"],
            selection=[float(v) for v in checkpoint["selection"]],
        )


def checkpoint_payload(
    model: nn.Module, optimizer: torch.optim.Optimizer, config: ExperimentConfig, state: TrainingState
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": config.to_dict(),
        **state.as_checkpoint_fields(),
    }


def save_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: ExperimentConfig, state: TrainingState
) -> None:
    save_checkpoint(path, checkpoint_payload(model, optimizer, config, state))


def read_resumable(path: Path, config: ExperimentConfig, *, required: bool = False) -> dict[str, Any] | None:
    """The checkpoint at `path` (None if there is none and none is `required`), refusing one
    written by a different experiment."""
    if not required and not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    saved = ExperimentConfig.from_dict(checkpoint["config"])
    if training_identity(saved) != training_identity(config):
        raise CheckpointError(
            f"{path} was written by a different experiment (its training settings differ from these); "
            "train with its config, or in another run directory"
        )
    return checkpoint


def restore(checkpoint: dict[str, Any] | None, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    if checkpoint is None:
        return TrainingState()
    model.load_state_dict(checkpoint["model"])
    load_optimizer_state(optimizer, checkpoint["optimizer"])
    logger.info("train.resumed epoch=%d", checkpoint["epoch"])
    return TrainingState.from_checkpoint(checkpoint)


def completed_epochs(path: Path) -> int:
    """Epochs completed by the checkpoint at `path` (0 when there is none)."""
    return int(load_checkpoint(path)["epoch"]) if path.is_file() else 0


def training_identity(config: ExperimentConfig) -> dict[str, Any]:
    """What must match to resume: everything but the run length, evaluation and speed options."""
    identity = config.to_dict()
    for volatile in ("eval", "name", "device", "cpu_threads"):
        identity.pop(volatile)
    for volatile in ("epochs", "precision", "compile", "cuda_graph", "log_every", "channels_last", "cudnn_benchmark"):
        identity["train"].pop(volatile)
    return identity
