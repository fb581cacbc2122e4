"""Projected gradient descent (Madry et al., arXiv 1706.06083) and FGSM as its one-step case.

Gradients are taken with respect to the input only (`torch.autograd.grad(..., delta)`), so no
parameter gradient is computed or written. BatchNorm runs in the configured mode — train mode as
the authors during training (ASCL_SPEC §2.1), eval mode for evaluation — and every module's
previous mode is restored afterwards. The result is always inside the eps-ball and [0, 1].

The attack is split in two: `random_starts` draws the only random numbers, from an explicit
generator; `run` is deterministic given those starts and makes no host synchronisation, so a
training step can draw the starts outside a captured CUDA graph and replay `run` inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ascl.attacks.threat import ascent_step, clip_to_image, project, random_start
from ascl.config import AttackConfig
from ascl.models.mode import model_mode
from ascl.runtime import autocast


@dataclass(frozen=True, slots=True)
class Pgd:
    config: AttackConfig
    autocast_dtype: torch.dtype | None = None

    def random_starts(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x [B, C, H, W] → the initial perturbations of every restart, [restarts, B, C, H, W]."""
        c = self.config
        draws = [
            random_start(x, norm=c.norm, eps=c.eps, init=c.init, init_std=c.init_std, generator=generator)
            for _ in range(c.restarts)
        ]
        return torch.stack(draws)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x [B, C, H, W] in [0, 1], y [B] → x_adv, detached. Keeps the worst restart per example."""
        return self.run(model, x, y, self.random_starts(x, generator))

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """As `__call__`, from given starts [restarts, B, C, H, W]."""
        with model_mode(model, training=self.config.bn_mode == "train"):
            target = None
            if self.config.objective == "kl":
                with torch.no_grad(), autocast(self.autocast_dtype, x.device):
                    target = F.softmax(model(x)[0].float(), dim=1)
            best, best_loss = x, None
            for start in starts:
                x_adv = self._run(model, x, y, target, start)
                if self.config.restarts == 1:
                    return x_adv
                with torch.no_grad(), autocast(self.autocast_dtype, x.device):
                    loss = self._per_example_loss(model(x_adv)[0].float(), y, target)
                if best_loss is None:
                    best, best_loss = x_adv, loss
                else:
                    better = loss > best_loss
                    best = torch.where(better.view(-1, 1, 1, 1), x_adv, best)
                    best_loss = torch.maximum(loss, best_loss)
            return best

    def _run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, start: torch.Tensor
    ) -> torch.Tensor:
        c = self.config
        x = x.detach()
        # the TRADES start is deliberately not clipped before the first step
        delta = start if c.init == "normal" else clip_to_image(x, start)
        for _ in range(c.steps):
            delta.requires_grad_(True)
            with autocast(self.autocast_dtype, x.device):
                logits = model(x + delta)[0].float()
            loss = self._per_example_loss(logits, y, target).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + ascent_step(grad, norm=c.norm, step_size=c.step_size)
            delta = clip_to_image(x, project(delta, norm=c.norm, eps=c.eps))
        delta = project(delta.detach(), norm=c.norm, eps=c.eps)
        return (x + delta).clamp(0.0, 1.0)  # the clamp also absorbs fp rounding at the [0, 1] edges

    def _per_example_loss(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none").sum(dim=1)


def eval_pgd(
    *, norm: str, eps: float, step_size: float, steps: int, restarts: int = 1, autocast_dtype: torch.dtype | None = None
) -> Pgd:
    """PGD for evaluation: uniform random start, CE, BatchNorm in eval mode (ASCL_SPEC §2.4)."""
    config = AttackConfig(
        norm=norm,  # type: ignore[arg-type]  # validated by AttackConfig itself
        eps=eps,
        step_size=step_size,
        steps=steps,
        init="uniform",
        restarts=restarts,
        bn_mode="eval",
    )
    return Pgd(config, autocast_dtype)


def fgsm(*, eps: float, norm: str = "linf", random_init: bool = False, bn_mode: str = "eval") -> Pgd:
    """FGSM (Goodfellow et al.), or with random start and step 1.25·eps (Wong et al., arXiv 2001.03994)."""
    step, init = (1.25 * eps, "uniform") if random_init else (eps, "zero")
    config = AttackConfig(norm=norm, eps=eps, step_size=step, steps=1, init=init, bn_mode=bn_mode)  # type: ignore[arg-type]
    return Pgd(config)
