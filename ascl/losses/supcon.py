"""Supervised contrastive loss (Khosla et al., arXiv 2004.11362), as SupContrast's `SupConLoss`
with contrast_mode 'all'. Used by the SCL+AT baseline and as the reference for ASCL's 'all' case.
"""

from __future__ import annotations

import torch


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
) -> torch.Tensor:
    """features [N, V, D] (V views; not normalised here), labels [N] or None (SimCLR) → scalar.

    Anchors and contrasts are all N·V views ordered [view 0 of all; view 1 of all; ...]."""
    if features.dim() != 3:
        raise ValueError(f"features must be [N, V, D] (got {tuple(features.shape)})")
    n, views = features.shape[:2]
    features = features if features.dtype == torch.float64 else features.float()
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # [N·V, D]
    if labels is None:
        labels = torch.arange(n, device=features.device)
    labels = labels.repeat(views)
    same = labels[:, None] == labels[None, :]
    logits = contrast @ contrast.T / temperature
    # SupContrast subtracts the row maximum (the anchor itself) and then drops the anchor from the
    # sum: with unnormalised features every other exp() underflows to 0 and 0·log(0) gives NaN.
    # Masking the anchor out first gives the same values wherever theirs are finite (§4.5 style).
    self_pair = torch.eye(n * views, dtype=torch.bool, device=features.device)
    log_prob = torch.log_softmax(logits.masked_fill(self_pair, -1e9), dim=1)
    positives = same & ~self_pair
    mean_log_prob_pos = torch.where(positives, log_prob, 0.0).sum(dim=1) / positives.sum(dim=1).clamp_min(1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()
