"""Losses: the ASCL contrastive loss and its selection fractions, SupCon, TRADES KL, cross-entropy."""

from ascl.losses.ascl import (
    ascl_contrastive_loss,
    ascl_loss_and_counts,
    fractions_from_counts,
    selection_fractions,
    selection_masks,
)
from ascl.losses.classification import cross_entropy, trades_kl
from ascl.losses.distances import pairwise_distance
from ascl.losses.supcon import supcon_loss

__all__ = [
    "ascl_contrastive_loss",
    "ascl_loss_and_counts",
    "cross_entropy",
    "fractions_from_counts",
    "pairwise_distance",
    "selection_fractions",
    "selection_masks",
    "supcon_loss",
    "trades_kl",
]
