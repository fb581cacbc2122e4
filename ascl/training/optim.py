"""SGD and the learning-rate schedule as a pure function of (epoch, step) (ASCL_SPEC §7.1).

A pure schedule needs no state in the checkpoint beyond the epoch, which keeps resume exact."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ascl.config import OptimConfig


def build_optimizer(model: nn.Module, config: OptimConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with weight decay on every parameter, head and BatchNorm included, as the authors.

    The step is one fused kernel and the learning rate a tensor on the device, so a step makes no
    host synchronisation and can be captured in a CUDA graph; `set_learning_rate` updates it in
    place. CPU and CUDA run the same code path."""
    return torch.optim.SGD(
        model.parameters(),
        lr=torch.tensor(config.lr, device=device),
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        fused=True,
    )


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state but keep this optimizer's own implementation choices
    (fused, the learning rate's type and device): the checkpoint may come from another device."""
    kept = [{key: group[key] for key in ("lr", "fused", "foreach") if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, kept, strict=True):
        group.update(own)


def learning_rate(config: OptimConfig, *, epoch: int, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The rate for `step` (0-based, within `epoch`, 0-based). piecewise is set once per epoch
    (×gamma at each milestone, as the authors' 0.1 → 0.01 → 0.001 → 1e-4); cosine and onecycle
    change every step."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "piecewise":
        return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    progress = (epoch * steps_per_epoch + step) / max(epochs * steps_per_epoch, 1)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    peak = 0.4  # onecycle: linear up to lr at 40% of training, then linearly down to 0
    return config.lr * (progress / peak if progress < peak else (1.0 - progress) / (1.0 - peak))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"].fill_(lr)  # in place: a captured step reads this tensor
