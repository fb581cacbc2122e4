"""AutoAttack (Croce & Hein, arXiv 2003.01690) through `pyautoattack` 0.2.0, the reference attack
code with a different API. Run in eval mode.

'standard' is the full suite (APGD-CE, APGD-T, FAB-T, Square). 'custom' is what the authors'
evaluation ran by default: the standard parameters with the attack list cut to APGD-CE + APGD-T
(APGD-CE: 1 restart, 100 iterations; APGD-T: 9 target classes, 1 restart, 100 iterations).

The cascade is driven here rather than by `run_standard_evaluation`, attack by attack and batch by
batch, so that progress can be shown and the attacks that actually ran are known: each attack runs
only on the examples every earlier attack left correctly classified, and an attack is skipped when
none are left. The per-attack dispatch is pyautoattack's own (its `run_standard_evaluation`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ascl.evaluation.progress import AttackProgress
from ascl.models import LogitsOnly
from ascl.models.mode import model_mode

logger = logging.getLogger(__name__)

ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "custom": ("apgd-ce", "apgd-t")}


@dataclass(frozen=True, slots=True)
class AutoAttackResult:
    flags: torch.Tensor  # bool [N]: correct on the clean image and after every attack run
    attacks: tuple[str, ...]  # the attacks that ran, in order


def autoattack_flags(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    version: str,
    batch_size: int,
    progress: AttackProgress,
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
) -> AutoAttackResult:
    """x [N, C, H, W] in [0, 1], y [N] → which examples survive the AutoAttack `version`."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError("AutoAttack needs the 'pyautoattack' package: pip install 'pyautoattack==0.2.0'") from error
    names = ATTACKS[version]
    logger.info("eval.autoattack version=%s attacks=%s examples=%d", version, ",".join(names), len(y))
    classifier = LogitsOnly(model, autocast_dtype=autocast_dtype)
    with model_mode(model, training=False):
        aa_norm = "Linf" if norm == "linf" else "L2"
        if version == "standard":
            attack = AutoAttack(classifier, norm=aa_norm, eps=eps, version="standard", device=x.device, seed=seed)
        else:
            attack = AutoAttack(
                classifier, attacks=list(names), norm=aa_norm, eps=eps, version="custom", device=x.device, seed=seed
            )
            attack.apgd.n_restarts = 1  # the standard version's setting, which the authors kept
        attack.verbose = False
        with torch.no_grad():
            robust = _predict(classifier, x, batch_size) == y
        ran = []
        for name in names:
            remaining = robust.nonzero().flatten()
            if remaining.numel() == 0:
                break
            progress.start(name, remaining.numel())
            for index in remaining.split(batch_size):
                adversarial = _perturb(attack, name, x[index], y[index])
                with torch.no_grad():
                    robust[index] &= classifier(adversarial).argmax(1) == y[index]
                progress.advance(index.numel())
            ran.append(name)
            logger.info("eval.autoattack_step attack=%s robust_acc=%.4f", name, float(robust.float().mean()))
    return AutoAttackResult(robust, tuple(ran))


def _predict(classifier: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([classifier(chunk).argmax(1) for chunk in x.split(batch_size)])


def _perturb(attack: Any, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One attack of the suite on one batch, set up as pyautoattack's `run_standard_evaluation` does."""
    if name == "apgd-ce":
        attack.apgd.loss = "ce"
        attack.apgd.seed = attack.get_seed()
        return attack.apgd.perturb(x, y)
    if name == "apgd-t":
        attack.apgd_targeted.seed = attack.get_seed()
        return attack.apgd_targeted.perturb(x, y)
    if name == "fab-t":
        attack.fab.targeted = True
        attack.fab.n_restarts = 1
        attack.fab.seed = attack.get_seed()
        return attack.fab.perturb(x, y)
    if name == "square":
        attack.square.seed = attack.get_seed()
        return attack.square.perturb(x, y)
    raise ValueError(f"unknown AutoAttack attack {name!r}")
