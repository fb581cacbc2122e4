"""Projected gradient descent (Madry et al., arXiv 1706.06083) and FGSM as its one-step case.

Gradients are taken with respect to the input only (`torch.autograd.grad(..., delta)`), so no
parameter gradient is computed or written. BatchNorm runs in the requested mode — train mode as
the authors during training (ASCL_SPEC §2.1), eval mode for evaluation — and every module's
previous mode is restored afterwards. The result is always inside the eps-ball and [0, 1].
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Pgd:
    norm: str
    eps: float
    step_size: float
    steps: int
    init: str = "uniform"
    init_std: float = 0.001
    restarts: int = 1
    objective: str = "ce"  # 'ce': summed cross-entropy; 'kl': summed KL(p(x) || p(x + delta))
    bn_mode: str = "train"
    autocast_dtype: torch.dtype | None = None

    @classmethod
    def from_config(cls, config: AttackConfig, *, autocast_dtype: torch.dtype | None = None) -> Pgd:
        return cls(
            norm=config.norm,
            eps=config.eps,
            step_size=config.step_size,
            steps=config.steps,
            init=config.init,
            init_std=config.init_std,
            restarts=config.restarts,
            objective=config.objective,
            bn_mode=config.bn_mode,
            autocast_dtype=autocast_dtype,
        )

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x [B, C, H, W] in [0, 1], y [B] → x_adv, detached. Keeps the worst restart per example."""
        with model_mode(model, training=self.bn_mode == "train"):
            target = None
            if self.objective == "kl":
                with torch.no_grad(), autocast(self.autocast_dtype, x.device):
                    target = F.softmax(model(x)[0].float(), dim=1)
            best, best_loss = x, None
            for _ in range(self.restarts):
                x_adv = self._run(model, x, y, target, generator)
                if self.restarts == 1:
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
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        x = x.detach()
        delta = random_start(
            x, norm=self.norm, eps=self.eps, init=self.init, init_std=self.init_std, generator=generator
        )
        if self.init != "normal":  # the TRADES start is deliberately not clipped before the first step
            delta = clip_to_image(x, delta)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            with autocast(self.autocast_dtype, x.device):
                logits = model(x + delta)[0].float()
            loss = self._per_example_loss(logits, y, target).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + ascent_step(grad, norm=self.norm, step_size=self.step_size)
            delta = clip_to_image(x, project(delta, norm=self.norm, eps=self.eps))
        delta = project(delta.detach(), norm=self.norm, eps=self.eps)
        return (x + delta).clamp(0.0, 1.0)  # the clamp also absorbs fp rounding at the [0, 1] edges

    def _per_example_loss(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none").sum(dim=1)


def fgsm(*, eps: float, norm: str = "linf", random_init: bool = False, bn_mode: str = "eval") -> Pgd:
    """FGSM (Goodfellow et al.), or with random start and step 1.25·eps (Wong et al., arXiv 2001.03994)."""
    if random_init:
        return Pgd(norm=norm, eps=eps, step_size=1.25 * eps, steps=1, init="uniform", bn_mode=bn_mode)
    return Pgd(norm=norm, eps=eps, step_size=eps, steps=1, init="zero", bn_mode=bn_mode)
