"""How many examples an evaluation attack takes at once. On CUDA the largest batch that fits in
half the free memory: one attack step of a probe batch is measured and scaled. Bigger batches are
what make evaluation fast there (a PGD-200 of 10,000 images in batches of 500 is 4,000 small,
launch-bound steps); half the memory leaves room for AutoAttack's per-example buffers."""

from __future__ import annotations

import torch
from torch import nn

from ascl.data import Split, eval_batches
from ascl.evaluation.plan import EvalPlan
from ascl.models.mode import model_mode
from ascl.runtime import autocast

_PROBE = 64


def eval_batch_size(model: nn.Module, split: Split, plan: EvalPlan) -> int:
    """plan.batch_size, or on CUDA with plan.auto_batch the largest batch that fits (never smaller)."""
    device = split.labels.device
    if not plan.auto_batch or device.type != "cuda" or len(split) <= plan.batch_size:
        return plan.batch_size
    x, y = next(eval_batches(split.head(_PROBE), _PROBE))
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with model_mode(model, training=False):
        delta = torch.zeros_like(x, requires_grad=True)
        with autocast(plan.autocast_dtype(), device):
            loss = nn.functional.cross_entropy(model(x + delta)[0].float(), y, reduction="sum")
        torch.autograd.grad(loss, delta)
    per_example = max(torch.cuda.max_memory_allocated(device) - before, 1) / x.shape[0]
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(0.5 * free / per_example)
    return max(plan.batch_size, min(fits, len(split)))
