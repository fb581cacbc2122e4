"""Data-parallel training with torch.distributed, active when a process group is initialised (a
launcher such as Ray Train's TorchTrainer does that before calling the per-worker function).

Every worker draws the same global batch and the same attack starts (same seed everywhere) and
trains on its slice of it, so W workers with `train.batch_size` B take the same optimizer steps
as one worker with batch B, with the same learning-rate schedule. Gradients are averaged by DDP.
The contrastive loss runs over the global batch: latents, labels and predictions are all-gathered
with gradients (the gather's backward sums every worker's gradient for its rows; with the loss
identical on every worker that is W times the gradient, which DDP's averaging divides back).
Rank 0 alone writes files and reports; decisions that must agree (stop) are taken on rank 0 and
broadcast, so workers never disagree about how many collectives follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True, slots=True)
class Workers:
    rank: int
    world: int
    collective_device: torch.device  # where small control tensors live for this backend

    @classmethod
    def solo(cls) -> Workers:
        return cls(rank=0, world=1, collective_device=torch.device("cpu"))

    @classmethod
    def current(cls, device: torch.device) -> Workers:
        """The process group's view, or a single worker when none is initialised."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return cls.solo()
        collective_device = device if dist.get_backend() == dist.Backend.NCCL else torch.device("cpu")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), collective_device=collective_device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, t: torch.Tensor, *, views: int, dim: int = 0) -> torch.Tensor:
        """This worker's rows of a batch stacked by views along `dim` ([V·B, ...] → [V·B/W, ...]),
        so each view keeps the same images on the same worker."""
        if self.world == 1:
            return t
        per_view = t.shape[dim] // views
        share = per_view // self.world
        blocks = t.unflatten(dim, (views, per_view))
        return blocks.narrow(dim + 1, self.rank * share, share).flatten(dim, dim + 1)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every worker's rows, concatenated in rank order; gradients flow back to each worker's rows."""
        if self.world == 1:
            return t
        if t.requires_grad:
            return torch.cat(dist_fn.all_gather(t))
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over workers of a small tensor (metrics)."""
        if self.world == 1:
            return t
        total = t.to(self.collective_device, copy=True)
        dist.all_reduce(total)
        return total.to(t.device)

    def agree(self, flag: bool) -> bool:
        """Rank 0's flag, on every worker."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.collective_device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def from_main(self, obj: Any) -> Any:
        """Rank 0's object (picklable), on every worker: e.g. a checkpoint read on rank 0's disk."""
        if self.world == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.collective_device)
        return box[0]
