"""From a config to a ready training step: model, optimizer, attack, objective, the step runner
(eager, torch.compile'd or captured as a CUDA graph) and the data-parallel wiring. Used by
`run_experiment` and by the benchmarks, so both measure the same step."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ascl.attacks import Pgd
from ascl.config import ExperimentConfig
from ascl.data import DataBundle, Split, train_batches
from ascl.errors import ConfigError
from ascl.models import RobustClassifier, build_model
from ascl.runtime import autocast_dtype
from ascl.training.objectives import Networks, Objective, StepOutput, no_gather
from ascl.training.optim import build_optimizer
from ascl.training.step import CapturedStep, CloneOutputs, EagerStep, TrainStep
from ascl.training.workers import Workers

logger = logging.getLogger(__name__)

_CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


@dataclass(frozen=True, slots=True, kw_only=True)
class Training:
    config: ExperimentConfig
    device: torch.device
    model: RobustClassifier  # the weights: checkpointed, validated and evaluated unwrapped
    optimizer: torch.optim.Optimizer
    objective: Objective
    step: TrainStep
    workers: Workers
    steps_per_epoch: int
    images_per_step: int  # natural images per optimizer step over all workers, each view counted

    def epoch_batches(self, split: Split, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's global batches, shuffled and augmented with `generator`."""
        t, d = self.config.train, self.config.data
        return train_batches(
            split,
            batch_size=t.batch_size,
            views=self.config.objective.views,
            drop_last=t.drop_last,
            padding=d.crop_padding,
            hflip=d.hflip,
            generator=generator,
        )

    def run_step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> StepOutput:
        """One optimizer step on a global batch: every worker draws the same random starts for
        the whole batch and trains on its own slice."""
        attack = self.objective.attack
        starts = None if attack is None else attack.random_starts(x, generator)
        views, w = self.config.objective.views, self.workers
        local_starts = None if starts is None else w.shard(starts, views=views, dim=1)
        return self.step(w.shard(x, views=views), w.shard(y, views=views), local_starts)


def build_classifier(config: ExperimentConfig, data: DataBundle) -> RobustClassifier:
    return build_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, mean=data.mean, std=data.std
    )


def build_training(
    config: ExperimentConfig, data: DataBundle, device: torch.device, *, model: RobustClassifier | None = None
) -> Training:
    """Everything one training step needs. `model` replaces the configured architecture (tests)."""
    workers = Workers.current(device)
    t = config.train
    if t.batch_size % workers.world:
        raise ConfigError("train.batch_size", f"{t.batch_size} does not split evenly over {workers.world} workers")
    torch.manual_seed(config.seed)  # the initial weights, the same on every worker
    model = (model or build_classifier(config, data)).to(device)
    if workers.distributed and t.sync_batchnorm:
        model = cast(RobustClassifier, nn.SyncBatchNorm.convert_sync_batchnorm(model))
    if device.type == "cuda" and t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dtype = autocast_dtype(t.precision, device)
    optimizer = build_optimizer(model, config.optim, device)
    attack = Pgd(config.attack, dtype) if config.objective.kind != "standard" else None
    gather = workers.gather if workers.distributed and config.objective.contrastive_scope == "global" else no_gather
    objective = Objective(config.objective, attack, dtype, gather)
    eager = EagerStep(
        _networks(config, model, workers),
        objective,
        optimizer,
        post_step_bn_forwards=t.post_step_bn_forwards,
        marks_cudagraph_steps=t.compile in _CUDAGRAPH_COMPILE_MODES,
        warmup_steps=_warmup_steps(t.compile, device),
    )
    per_step = t.batch_size
    steps = len(data.train) // per_step if t.drop_last else -(-len(data.train) // per_step)
    if steps == 0:
        raise ValueError(f"train.batch_size {per_step} is larger than the {len(data.train)} training images")
    return Training(
        config=config,
        device=device,
        model=model,
        optimizer=optimizer,
        objective=objective,
        step=_step_runner(config, eager, device, workers),
        workers=workers,
        steps_per_epoch=steps,
        images_per_step=per_step * config.objective.views,
    )


def _warmup_steps(compile_mode: str, device: torch.device) -> int:
    """Steps that include one-time work: compilation on the first; torch.compile's CUDA graphs
    record on the second call; CUDA's first step initialises cuDNN and the allocator."""
    if compile_mode in _CUDAGRAPH_COMPILE_MODES:
        return 2
    return int(compile_mode != "none" or device.type == "cuda")


def _networks(config: ExperimentConfig, model: nn.Module, workers: Workers) -> Networks:
    """The attack runs on the bare (or compiled) model: its forwards need no gradient averaging.
    The loss forwards go through DDP when data-parallel."""
    mode = config.train.compile

    def compiled(module: nn.Module) -> nn.Module:
        if mode == "none":
            return module
        # compiling a Module gives an OptimizedModule (a Module); torch types it as a plain callable
        result = cast(nn.Module, torch.compile(module, mode=mode))
        return CloneOutputs(result) if mode in _CUDAGRAPH_COMPILE_MODES else result

    attack = compiled(model)
    if not workers.distributed:
        return Networks(train=attack, attack=attack)
    uses_head = config.objective.kind in ("ascl", "scl_at")
    ddp = nn.parallel.DistributedDataParallel(
        model, find_unused_parameters=not uses_head and getattr(model, "head", None) is not None
    )
    return Networks(train=compiled(ddp), attack=attack)


def _step_runner(config: ExperimentConfig, eager: EagerStep, device: torch.device, workers: Workers) -> TrainStep:
    if not config.train.cuda_graph:
        return eager
    if device.type != "cuda" or workers.distributed:
        why = "not on CUDA" if device.type != "cuda" else "data-parallel"
        logger.info("train.cuda_graph_off reason=%r: the step runs eagerly", why)
        return eager
    return CapturedStep(eager)
