"""The wrapper every model is used through: [0,1] pixels in, (logits, z) out (ASCL_SPEC §5).

Input normalisation lives here so attacks always work in pixel space; `z` is the projection
head's output when there is a head, else the backbone's penultimate features `h`. The
classifier always reads `h`, so the head only learns from the contrastive term.
"""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """A network returning (logits [B, C], penultimate features h [B, feature_dim])."""

    feature_dim: int


class RobustClassifier(nn.Module):
    mean: torch.Tensor  # buffers, registered below
    std: torch.Tensor

    def __init__(
        self, backbone: Backbone, *, mean: tuple[float, ...], std: tuple[float, ...], head: nn.Module | None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [0, 1] → (logits [B, classes], z [B, feat_dim or feature_dim])."""
        logits, h = self.backbone((x - self.mean) / self.std)
        return logits, (h if self.head is None else self.head(h))


def projection_head(kind: str, in_dim: int, feat_dim: int) -> nn.Module | None:
    if feat_dim <= 0:
        return None
    if kind == "linear":
        return nn.Linear(in_dim, feat_dim)  # the authors' single linear layer, no activation
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, feat_dim))


class LogitsOnly(nn.Module):
    """Adapter for third-party attacks (AutoAttack) that expect a model returning logits.

    With `autocast_dtype` the model runs under autocast and the logits come back in fp32, so the
    attack's own loss arithmetic stays in fp32."""

    def __init__(self, model: nn.Module, *, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.autocast_dtype = autocast_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.model(x)[0]
        with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
            return self.model(x)[0].float()
