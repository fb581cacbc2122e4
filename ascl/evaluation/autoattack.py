"""AutoAttack (Croce & Hein, arXiv 2003.01690) through `pyautoattack` 0.2.0, the reference attack
code with a different API. Run in eval mode and fp32.

'standard' is the full suite (APGD-CE, APGD-T, FAB-T, Square). 'custom' is what the authors'
evaluation ran by default: the standard parameters with the attack list cut to APGD-CE + APGD-T.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ascl.models import LogitsOnly
from ascl.models.mode import model_mode

CUSTOM_ATTACKS = ["apgd-ce", "apgd-t"]


def autoattack_flags(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    version: str,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """x [N, C, H, W] in [0, 1], y [N] → bool [N]: still correctly classified after AutoAttack."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as error:
        raise ImportError("AutoAttack needs the 'pyautoattack' package: pip install 'pyautoattack==0.2.0'") from error
    classifier = LogitsOnly(model)
    with model_mode(model, training=False):
        attack = AutoAttack(
            classifier, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard", device=x.device, seed=seed
        )
        if version == "custom":
            attack.attacks_to_run = list(CUSTOM_ATTACKS)
        attack.verbose = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
        _, y_adv = attack.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv.to(y.device) == y
