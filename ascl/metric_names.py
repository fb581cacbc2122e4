"""The figures a training run reports, by where they appear: `train` (an epoch's averages over its
steps), `val` (the evaluation that selects the checkpoint) and `test` (the final evaluation report's
accuracies). Torch-free, so that a service checks a metric name before any training runs."""

from __future__ import annotations

from typing import Literal

Scope = Literal["train", "val", "test"]

LOSS_TERMS = ("loss", "ce_nat", "ce_adv", "kl", "contrastive")  # which ones depend on the objective
TRAIN_METRICS = (*LOSS_TERMS, "clean_acc", "adv_acc", "pos_frac", "neg_frac")
VALIDATION_METRICS = ("clean_acc", "robust_acc")
TEST_METRICS = ("clean_acc", "pgd_acc", "robust_acc", "robust_clean_acc", "autoattack_acc")
REPORTED: dict[Scope, tuple[str, ...]] = {"train": TRAIN_METRICS, "val": VALIDATION_METRICS, "test": TEST_METRICS}
