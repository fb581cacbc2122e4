"""Fidelity of the ASCL contrastive loss to ASCL_SPEC §4, on hand-built cases and random inputs."""

import math

import pytest
import torch

from ascl.config import DISTANCES, NEG_TYPES
from ascl.losses import (
    ascl_contrastive_loss,
    selection_fractions,
    selection_masks,
    supcon_loss,
    trades_kl,
)

# Two images x1 (label 0), x2 (label 1) and their adversarial copies, ordered [x1, x2, x1', x2'].
# The attack flips x1' to class 1; everything else is predicted correctly.
LABELS = torch.tensor([0, 1, 0, 1])
PREDS = torch.tensor([0, 1, 1, 1])


def pairs(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(a), int(c)) for a, c in mask.nonzero().tolist()}


@pytest.mark.parametrize(
    ("neg_type", "positives", "legal"),
    [
        ("all", {(0, 2), (2, 0), (1, 3), (3, 1)}, {(a, c) for a in range(4) for c in range(4) if a != c}),
        # hard: other-label samples predicted as the anchor's TRUE label
        ("hard", {(0, 2), (2, 0), (1, 3), (3, 1)}, {(0, 2), (2, 0), (1, 3), (3, 1), (1, 2), (3, 2)}),
        # soft: other-label samples with the anchor's PREDICTION
        ("soft", {(0, 2), (2, 0), (1, 3), (3, 1)}, {(0, 2), (2, 0), (1, 3), (3, 1), (1, 2), (2, 1), (2, 3), (3, 2)}),
        ("merge", {(0, 2), (2, 0), (1, 3), (3, 1)}, {(0, 2), (2, 0), (1, 3), (3, 1), (1, 2), (2, 1), (2, 3), (3, 2)}),
        # leaked: positives need the same label AND prediction; the flipped counterpart (0↔2) is
        # dropped from the positives and from the denominator, which is "same prediction" only.
        ("leaked", {(1, 3), (3, 1)}, {(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)}),
    ],
)
def test_masks_on_hand_built_batch(neg_type, positives, legal):
    masks = selection_masks(LABELS, PREDS, neg_type=neg_type)
    assert pairs(masks.positives) == positives
    assert pairs(masks.legal) == legal
    assert not masks.legal.diagonal().any()


@pytest.mark.parametrize(
    ("neg_type", "expected"),
    [
        ("all", (1.0, 1.0)),
        ("hard", (1.0, 2 / 8)),
        ("soft", (1.0, 4 / 8)),
        ("merge", (1.0, 4 / 8)),
        ("leaked", (2 / 4, 4 / 8)),
    ],
)
def test_selection_fractions_on_hand_built_batch(neg_type, expected):
    assert selection_fractions(LABELS, PREDS, neg_type=neg_type) == pytest.approx(expected)


def test_selection_fractions_all_correct_predictions_keep_every_positive():
    labels = torch.tensor([0, 0, 1, 1, 2])
    pos, neg = selection_fractions(labels, labels.clone(), neg_type="leaked")
    assert pos == 1.0
    assert neg == 0.0  # with perfect predictions no other-label sample shares a prediction


def test_selection_fractions_undefined_without_pairs_is_nan():
    pos, _ = selection_fractions(torch.tensor([0, 1]), torch.tensor([0, 1]), neg_type="all")
    assert math.isnan(pos)


def reference_loss(z, labels, preds, neg_type, temperature):
    """An independent, loop-based reading of ASCL_SPEC §4.3-4.4 with the linf distance."""
    m = z.shape[0]
    total = 0.0
    for a in range(m):
        legal, positives = [], []
        for c in range(m):
            if c == a:
                continue
            same_label = labels[a] == labels[c]
            same_pred = preds[a] == preds[c]
            if neg_type == "leaked":
                keep, positive = same_pred, same_label and same_pred
            else:
                hard = preds[c] == labels[a]
                soft = same_pred
                chosen = {"all": True, "hard": hard, "soft": soft, "merge": hard or soft}[neg_type]
                keep, positive = same_label or chosen, same_label
            if keep:
                legal.append(c)
            if positive:
                positives.append(c)
        if not positives:
            continue
        logits = {c: -float((z[a] - z[c]).abs().max()) / temperature for c in legal}
        log_norm = math.log(sum(math.exp(v) for v in logits.values()))
        total += -sum(logits[c] - log_norm for c in positives) / len(positives)
    return total / m


@pytest.mark.parametrize("neg_type", NEG_TYPES)
def test_loss_matches_independent_reference(neg_type):
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,), generator=generator)
    preds = torch.randint(0, 3, (12,), generator=generator)
    loss = ascl_contrastive_loss(z, labels, preds, neg_type=neg_type, distance="linf", temperature=0.5, normalize=False)
    expected = reference_loss(z, labels.tolist(), preds.tolist(), neg_type, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_all_equals_supcon_on_normalised_features():
    generator = torch.Generator().manual_seed(0)
    n = 32
    z = torch.randn(2 * n, 16, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (n,), generator=generator)
    preds = torch.randint(0, 4, (2 * n,), generator=generator)  # predictions do not matter for 'all'
    ours = ascl_contrastive_loss(
        z, labels.repeat(2), preds, neg_type="all", distance="matmul", temperature=0.2, normalize=True
    )
    unit = torch.nn.functional.normalize(z, dim=1)
    theirs = supcon_loss(torch.stack([unit[:n], unit[n:]], dim=1), labels, temperature=0.2, base_temperature=0.2)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    cosine = ascl_contrastive_loss(
        z, labels.repeat(2), preds, neg_type="all", distance="cosine", temperature=0.2, normalize=False
    )
    assert cosine.item() == pytest.approx(ours.item(), rel=1e-12)  # §4.4: matmul+norm ≡ cosine


def test_supcon_on_unnormalised_features_is_finite_and_equals_the_textbook_form():
    """SCL+AT feeds SupCon unnormalised latents at tau 0.07: SupContrast's max-subtraction then
    underflows every other logit and returns NaN; the loss must stay finite and exact."""
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(16, 2, 32, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, 4, (16,), generator=generator)
    loss = supcon_loss(features, labels, temperature=0.07)
    z = torch.cat([features[:, 0], features[:, 1]])
    y = labels.repeat(2)
    expected = 0.0
    for a in range(32):
        others = [c for c in range(32) if c != a]
        logits = torch.stack([z[a] @ z[c] / 0.07 for c in others])
        log_prob = logits - torch.logsumexp(logits, dim=0)
        positive = torch.tensor([bool(y[c] == y[a]) for c in others])
        expected -= log_prob[positive].mean().item() / 32
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_supcon_without_labels_is_simclr_and_permutation_invariant():
    generator = torch.Generator().manual_seed(3)
    features = torch.nn.functional.normalize(torch.randn(8, 2, 4, generator=generator, dtype=torch.float64), dim=2)
    perm = torch.randperm(8, generator=generator)
    simclr = supcon_loss(features, None, temperature=0.5)
    assert simclr.item() == pytest.approx(supcon_loss(features, torch.arange(8), temperature=0.5).item())
    assert simclr.item() == pytest.approx(supcon_loss(features[perm], None, temperature=0.5).item())


@pytest.mark.parametrize("distance", sorted(DISTANCES))
@pytest.mark.parametrize("neg_type", NEG_TYPES)
def test_gradients_finite_for_every_distance_even_with_duplicate_latents(distance, neg_type):
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=generator)
    z[5] = z[4]  # an exact duplicate: zero distance off the diagonal (the authors' l2 gives NaN here)
    z.requires_grad_(True)
    labels = torch.randint(0, 3, (16,), generator=generator)
    preds = torch.randint(0, 3, (16,), generator=generator)
    loss = ascl_contrastive_loss(
        z, labels, preds, neg_type=neg_type, distance=distance, temperature=0.2, normalize=distance != "cosine"
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()


def test_l2_is_plain_euclidean_distance():
    from ascl.losses import pairwise_distance

    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_distance(z, "l2").tolist() == [[0.0, 5.0], [5.0, 0.0]]


def test_low_precision_input_gives_finite_loss():
    z = torch.randn(8, 4).to(torch.bfloat16).requires_grad_(True)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    loss = ascl_contrastive_loss(
        z, labels, labels.flip(0), neg_type="leaked", distance="linf", temperature=0.2, normalize=True
    )
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(z.grad.float()).all()


def test_anchor_without_positive_counts_as_zero_in_the_mean():
    z = torch.randn(3, 4, dtype=torch.float64)
    labels, preds = torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1])
    loss = ascl_contrastive_loss(z, labels, preds, neg_type="leaked", distance="linf", temperature=1.0, normalize=False)
    # anchors 0 and 1 each have one positive and one legal column: log-softmax over one entry is 0
    assert loss.item() == pytest.approx(0.0)


def test_distance_normalisation_constraints_follow_the_authors():
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="requires normalize=true"):
        ascl_contrastive_loss(z, y, y, neg_type="all", distance="l2", temperature=0.1, normalize=False)
    with pytest.raises(ValueError, match="cosine"):
        ascl_contrastive_loss(z, y, y, neg_type="all", distance="cosine", temperature=0.1, normalize=True)


def test_every_configurable_distance_has_a_function():
    from ascl.losses.distances import DISTANCE_FUNCTIONS

    assert sorted(DISTANCE_FUNCTIONS) == sorted(DISTANCES)


def test_trades_kl_reductions():
    nat, adv = torch.randn(6, 10), torch.randn(6, 10)
    batchmean = trades_kl(nat, adv, reduction="batchmean")
    mean = trades_kl(nat, adv, reduction="mean")
    assert mean.item() == pytest.approx(batchmean.item() / 10)  # §3: 'mean' divides by N·C
    expected = torch.nn.functional.kl_div(adv.log_softmax(1), nat.softmax(1), reduction="batchmean")
    assert batchmean.item() == pytest.approx(expected.item(), rel=1e-5)
