"""Batched augmentation on the device: random crop with zero padding and horizontal flip.

Equivalent to torchvision's RandomCrop(size, padding) + RandomHorizontalFlip applied per image,
but done for a whole batch in a few tensor ops, so no DataLoader sits in the hot loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, *, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """x [B, C, H, W] (any dtype) → same shape, each image independently cropped and maybe flipped."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, channels, rows, cols]
    if hflip:
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x
