"""The figures a training run reports, by where they appear: `train` (an epoch's averages over its
steps), `val` (the evaluation that selects the checkpoint) and `test` (the final evaluation report's
accuracies); which ones depends on the config. Torch-free, so that a service checks a metric name
before any training runs; a test runs every objective and compares what it reports with this."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ascl.config import ExperimentConfig

Scope = Literal["train", "val", "test"]
Better = Literal["higher", "lower"]

VALIDATION_METRICS = ("clean_acc", "robust_acc")
LOSS_TERMS = ("loss", "ce_nat", "ce_adv", "kl", "contrastive")
_CONTRASTIVE = ("ascl", "scl_at")
# the fields `reported` reads, each with what of its value it reads: which figures a run reports
# changes only where one of these does
DEPENDS_ON: dict[str, Callable[[Any], object]] = {
    "objective.kind": lambda kind: kind,
    "objective.smoothness_weight": lambda weight: weight > 0,
    "eval.pgd_steps": lambda steps: steps > 0,
    "eval.autoattack": lambda version: version != "none",
}


def reported(config: ExperimentConfig) -> dict[Scope, tuple[str, ...]]:
    """The figures every run of `config` reports, by scope."""
    return {"train": _training(config), "val": VALIDATION_METRICS, "test": _final(config)}


def better(key: str) -> Better | None:
    """Which way a figure improves: accuracies up, loss terms down; others (fractions) neither."""
    if key.endswith("_acc"):
        return "higher"
    return "lower" if key in LOSS_TERMS else None


def validation_counterpart(test_key: str) -> str:
    """The per-epoch validation figure nearest a final one: its clean or its robust accuracy."""
    return "clean_acc" if test_key in ("clean_acc", "robust_clean_acc") else "robust_acc"


def _training(config: ExperimentConfig) -> tuple[str, ...]:
    objective = config.objective
    if objective.kind == "standard":
        return ("loss", "ce_nat", "clean_acc")
    terms = ["loss", "ce_nat", "kl" if objective.kind == "trades" else "ce_adv"]
    if objective.kind in _CONTRASTIVE:
        terms += ["kl"] if objective.smoothness_weight > 0 else []
        terms += ["contrastive"]
    terms += ["clean_acc", "adv_acc"]
    return (*terms, "pos_frac", "neg_frac") if objective.kind == "ascl" else tuple(terms)


def _final(config: ExperimentConfig) -> tuple[str, ...]:
    pgd = ("pgd_acc",) if config.eval.pgd_steps > 0 else ()
    autoattack = ("autoattack_acc",) if config.eval.autoattack != "none" else ()
    return ("clean_acc", *pgd, "robust_acc", "robust_clean_acc", *autoattack)
