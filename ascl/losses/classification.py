"""Classification losses on logits: cross-entropy and the TRADES KL (Zhang et al., arXiv 1901.08573)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def trades_kl(natural_logits: torch.Tensor, adversarial_logits: torch.Tensor, *, reduction: str) -> torch.Tensor:
    """KL(softmax(natural) || softmax(adversarial)); neither side detached (ASCL_SPEC §3).

    reduction 'batchmean' divides the sum by N (TRADES); 'mean' divides by N·C, which is what the
    authors' `kl_loss_with_logits` does and what the ASCL recipe's weight 2.0 was tuned with."""
    if reduction not in ("mean", "batchmean"):
        raise ValueError(f"reduction must be 'mean' or 'batchmean' (got {reduction!r})")
    log_p = F.log_softmax(natural_logits.float(), dim=1)
    log_q = F.log_softmax(adversarial_logits.float(), dim=1)
    total = (log_p.exp() * (log_p - log_q)).sum()
    return total / (log_p.numel() if reduction == "mean" else log_p.shape[0])
