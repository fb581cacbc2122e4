"""Pairwise distance matrices D [M, M] between latents [M, D] (ASCL_SPEC §4.2). All symmetric.

`l2` is the plain (not squared) Euclidean distance. The authors' version takes sqrt of the full
matrix including its exact-zero diagonal, so every gradient is NaN (§4.6). Here the sqrt is
only taken where the squared distance is positive (a double `where`), so the gradient at zero
distance is 0 and every value elsewhere is exact. This is a deliberate, documented fix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ascl.config import DISTANCES


def l1(z: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z, z, p=1.0)


def l2(z: torch.Tensor) -> torch.Tensor:
    squared_norm = (z * z).sum(dim=1)
    squared = (squared_norm[:, None] + squared_norm[None, :] - 2.0 * z @ z.T).clamp_min(0.0)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def linf(z: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z, z, p=float("inf"))


def cosine(z: torch.Tensor) -> torch.Tensor:
    """−cos(u, v), the authors' form (the README's 1 − cos differs by a constant)."""
    unit = F.normalize(z, dim=1, eps=1e-12)
    return -(unit @ unit.T)


def matmul(z: torch.Tensor) -> torch.Tensor:
    """−u·v; with the mandatory normalisation it equals `cosine`."""
    return -(z @ z.T)


DISTANCE_FUNCTIONS = {"l1": l1, "l2": l2, "linf": linf, "cosine": cosine, "matmul": matmul}  # keys: config.DISTANCES


def pairwise_distance(z: torch.Tensor, name: str) -> torch.Tensor:
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r} (known: {', '.join(DISTANCES)})")
    return DISTANCE_FUNCTIONS[name](z)
