"""The ASCL contrastive loss (Bui et al., "Understanding and Achieving Efficient Robustness with
Adversarial Supervised Contrastive Learning", arXiv 2101.10027), as the authors' `soft_lcscl`
(contrastive_losses_v2.py; ASCL_SPEC §4).

Anchors are all M latents, natural and adversarial together ([z(x); z(x')], M = 2N). For anchor a
the positives P(a) and the columns kept in the softmax denominator depend on `neg_type`:

| neg_type | positives            | denominator (besides nothing: the diagonal is always out) |
| all      | same label           | everything (plain SupCon)                                  |
| hard     | same label           | same label + other-label samples predicted as a's label    |
| soft     | same label           | same label + other-label samples with a's prediction       |
| merge    | same label           | same label + hard ∪ soft                                   |
| leaked   | same label and pred. | every sample with a's prediction, whatever its label       |

ℓ_a = −(1/max(|P(a)|, 1)) Σ_{c∈P(a)} log softmax_c(−D[a]/τ), and the loss is the mean over all M
anchors (anchors with no positive count as 0). Predictions are argmaxes of each anchor's own
logits and carry no gradient. The loss is computed in fp32 (fp64 if given fp64); masked columns
get a finite −1e9 and the positive sum uses a select, so no 0·(−inf) can occur (§4.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ascl.config import NEG_TYPES, distance_normalization_problem
from ascl.losses.distances import pairwise_distance

_MASKED = -1e9


@dataclass(frozen=True, slots=True)
class SelectionMasks:
    """Boolean [M, M] masks; the diagonal is False in all of them."""

    positives: torch.Tensor  # P(a)
    legal: torch.Tensor  # columns kept in the softmax denominator
    same_label: torch.Tensor  # SL, the positives of full supervised contrastive learning
    negatives: torch.Tensor  # selected negatives (legal ∩ different label)
    different_label: torch.Tensor  # DL, the negatives of full supervised contrastive learning


def selection_masks(labels: torch.Tensor, predictions: torch.Tensor, *, neg_type: str) -> SelectionMasks:
    """labels, predictions: int [M] → the masks of ASCL_SPEC §4.3."""
    if neg_type not in NEG_TYPES:
        raise ValueError(f"unknown neg_type {neg_type!r} (known: {', '.join(NEG_TYPES)})")
    if labels.shape != predictions.shape or labels.dim() != 1:
        raise ValueError(f"labels {tuple(labels.shape)} and predictions {tuple(predictions.shape)} must both be [M]")
    m = labels.shape[0]
    off_diagonal = ~torch.eye(m, dtype=torch.bool, device=labels.device)
    same_label = (labels[:, None] == labels[None, :]) & off_diagonal
    different_label = labels[:, None] != labels[None, :]
    same_prediction = (predictions[:, None] == predictions[None, :]) & off_diagonal
    if neg_type == "leaked":
        positives, legal = same_label & same_prediction, same_prediction
    else:
        positives = same_label
        if neg_type == "all":
            negatives = different_label
        else:
            hard = different_label & (predictions[None, :] == labels[:, None])
            soft = different_label & same_prediction
            negatives = {"hard": hard, "soft": soft, "merge": hard | soft}[neg_type]
        legal = same_label | negatives
    return SelectionMasks(
        positives=positives,
        legal=legal,
        same_label=same_label,
        negatives=legal & different_label,
        different_label=different_label,
    )


def ascl_contrastive_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    *,
    neg_type: str,
    distance: str,
    temperature: float,
    normalize: bool,
) -> torch.Tensor:
    """features [M, D], labels [M], predictions [M] (int) → scalar loss (fp32, or fp64 for fp64 input)."""
    masks = selection_masks(labels, predictions, neg_type=neg_type)
    return _loss_from_masks(features, masks, distance=distance, temperature=temperature, normalize=normalize)


def ascl_loss_and_counts(
    features: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    *,
    neg_type: str,
    distance: str,
    temperature: float,
    normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss plus on-device selection counts [kept positives, SL pairs, kept negatives, DL pairs],
    so the training loop can aggregate the fractions without a device sync per step."""
    masks = selection_masks(labels, predictions, neg_type=neg_type)
    loss = _loss_from_masks(features, masks, distance=distance, temperature=temperature, normalize=normalize)
    return loss, _counts(masks)


def _loss_from_masks(
    features: torch.Tensor, masks: SelectionMasks, *, distance: str, temperature: float, normalize: bool
) -> torch.Tensor:
    if features.dim() != 2 or features.shape[0] != masks.positives.shape[0]:
        raise ValueError(f"features must be [M, D] with M = {masks.positives.shape[0]} (got {tuple(features.shape)})")
    if problem := distance_normalization_problem(distance, normalize):
        raise ValueError(problem)
    z = features if features.dtype == torch.float64 else features.float()
    if normalize:
        z = F.normalize(z, dim=1, eps=1e-12)
    logits = -pairwise_distance(z, distance) / temperature
    logits = logits.masked_fill(~masks.legal, _MASKED)
    log_prob = F.log_softmax(logits, dim=1)
    positive_log_prob = torch.where(masks.positives, log_prob, 0.0).sum(dim=1)
    n_positives = masks.positives.sum(dim=1).clamp_min(1)
    return -(positive_log_prob / n_positives).mean()


def _counts(masks: SelectionMasks) -> torch.Tensor:
    return torch.stack(
        [masks.positives.sum(), masks.same_label.sum(), masks.negatives.sum(), masks.different_label.sum()]
    ).to(torch.float64)


def fractions_from_counts(counts: torch.Tensor) -> tuple[float, float]:
    """[kept positives, SL, kept negatives, DL] → (positive fraction, negative fraction); NaN where 0/0."""
    kept_pos, all_pos, kept_neg, all_neg = counts.tolist()
    return (kept_pos / all_pos if all_pos else float("nan"), kept_neg / all_neg if all_neg else float("nan"))


def selection_fractions(labels: torch.Tensor, predictions: torch.Tensor, *, neg_type: str) -> tuple[float, float]:
    """The share of positive and negative pairs kept relative to full supervised contrastive
    learning (neg_type 'all'), summed over all anchors a ≠ c (ASCL_SPEC §9). NaN where a batch
    has no same-label (or no different-label) pair."""
    return fractions_from_counts(_counts(selection_masks(labels, predictions, neg_type=neg_type)))
