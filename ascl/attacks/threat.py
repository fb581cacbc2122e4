"""Threat-model geometry as pure functions: random starts, steepest-ascent steps and projections.

Perturbations `delta` have the shape of the images [B, C, H, W]; every function keeps x + delta
inside [0, 1] by construction of the callers (see pgd.py).
"""

from __future__ import annotations

import torch


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped [B, 1, 1, 1] for broadcasting."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def random_start(
    x: torch.Tensor, *, norm: str, eps: float, init: str, init_std: float, generator: torch.Generator | None
) -> torch.Tensor:
    """The initial perturbation: uniform in the ball, 'normal' (TRADES: init_std·N(0, I)) or zero."""
    if init == "zero" or eps == 0:
        return torch.zeros_like(x)
    if norm == "linf" and init == "uniform":
        return (torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator) * 2 - 1) * eps
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    if init == "normal":
        return init_std * noise
    radius = torch.rand((x.shape[0],), device=x.device, dtype=x.dtype, generator=generator)
    return noise / _per_example_norm(noise) * radius.view(-1, 1, 1, 1) * eps


def ascent_step(grad: torch.Tensor, *, norm: str, step_size: float) -> torch.Tensor:
    """Steepest ascent under the norm: sign for L-inf, the normalised gradient for L2."""
    if norm == "linf":
        return step_size * grad.sign()
    return step_size * grad / _per_example_norm(grad)


def project(delta: torch.Tensor, *, norm: str, eps: float) -> torch.Tensor:
    """Projection onto the eps-ball around 0."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _per_example_norm(delta)).clamp(max=1.0)
    return delta * factor


def clip_to_image(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The delta that keeps x + delta in [0, 1] (a projection that never leaves the eps-ball)."""
    return (x + delta).clamp(0.0, 1.0) - x
