"""Training objectives (ASCL_SPEC §3): one step's loss and metrics for each defense.

    standard : CE(f(x))
    pgd_at   : α·CE(f(x)) + β·CE(f(x'))                                   (Madry; the authors use α = 0)
    trades   : α·CE(f(x)) + β·KL(f(x) || f(x'))                           (Zhang et al.)
    ascl     : w_c·L_ASCL([z(x); z(x')]) + w_s·KL(f(x) || f(x')) + α·CE(f(x)) + β·CE(f(x'))
    scl_at   : as ascl with SupCon over the (natural, adversarial) pair as the contrastive term

x' comes from the configured attack, run with BatchNorm in train mode on the whole (stacked) batch.
Natural and adversarial batches go through separate forward passes, so BatchNorm sees their
statistics separately, as in the authors' loop (§7.2). An objective makes no host synchronisation:
its metrics stay on the device, packed in one vector, so a whole step can be captured as a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ascl.attacks import Pgd
from ascl.config import ObjectiveConfig
from ascl.losses import ascl_loss_and_counts, cross_entropy, supcon_loss, trades_kl
from ascl.runtime import autocast

Gather = Callable[[torch.Tensor], torch.Tensor]  # a worker's rows → the global batch's rows (identity alone)
SELECTION = ("pos_kept", "pos_all", "neg_kept", "neg_all")  # see ascl_loss_and_counts


def no_gather(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True, slots=True)
class Networks:
    """The model as each pass sees it: `train` carries the loss forwards (wrapped for data-parallel
    gradient averaging when distributed), `attack` the attack's and the BatchNorm-only forwards."""

    train: nn.Module
    attack: nn.Module


@dataclass(frozen=True, slots=True)
class StepOutput:
    loss: torch.Tensor  # scalar with grad
    values: torch.Tensor  # float64 [len(names)], detached: loss terms, correct counts, selection counts
    names: tuple[str, ...]  # the loss terms, correct_nat, correct_adv, then SELECTION for contrastive objectives
    x_adv: torch.Tensor | None = None


@dataclass(frozen=True, slots=True)
class Objective:
    config: ObjectiveConfig
    attack: Pgd | None
    autocast_dtype: torch.dtype | None
    gather: Gather = no_gather

    def __call__(self, nets: Networks, x: torch.Tensor, y: torch.Tensor, *, starts: torch.Tensor | None) -> StepOutput:
        """x [V·B, C, H, W] in [0, 1] (views stacked), y [V·B], the attack's random starts
        [restarts, V·B, C, H, W] (None for 'standard') → the step's loss and metrics."""
        cfg = self.config
        if self.attack is None or starts is None:  # 'standard': no attack
            with autocast(self.autocast_dtype, x.device):
                logits, _ = nets.train(x)
            loss = cross_entropy(logits, y)
            return _output(loss, {"loss": loss, "ce_nat": loss, "correct_nat": _correct(logits, y)}, None)

        x_adv = self.attack.run(nets.attack, x, y, starts)
        need_natural_grad = cfg.kind != "pgd_at" or cfg.natural_weight > 0
        with autocast(self.autocast_dtype, x.device), torch.set_grad_enabled(need_natural_grad):
            logits_nat, z_nat = nets.train(x)
        with autocast(self.autocast_dtype, x.device):
            logits_adv, z_adv = nets.train(x_adv)

        terms: dict[str, torch.Tensor] = {"ce_nat": cross_entropy(logits_nat, y)}
        loss = cfg.natural_weight * terms["ce_nat"]
        if cfg.kind == "trades":
            terms["kl"] = trades_kl(logits_nat, logits_adv, reduction=cfg.kl_reduction)
            loss = loss + cfg.robust_weight * terms["kl"]
        else:
            terms["ce_adv"] = cross_entropy(logits_adv, y)
            loss = loss + cfg.robust_weight * terms["ce_adv"]
        counts = None
        if cfg.kind in ("ascl", "scl_at"):
            if cfg.smoothness_weight > 0:
                terms["kl"] = trades_kl(logits_nat, logits_adv, reduction=cfg.kl_reduction)
                loss = loss + cfg.smoothness_weight * terms["kl"]
            preds_nat, preds_adv = logits_nat.detach().argmax(1), logits_adv.detach().argmax(1)
            terms["contrastive"], counts = self._contrastive(z_nat, z_adv, y, preds_nat, preds_adv)
            loss = loss + cfg.contrastive_weight * terms["contrastive"]
        values = {"loss": loss, **terms, "correct_nat": _correct(logits_nat, y), "correct_adv": _correct(logits_adv, y)}
        return _output(loss, values, counts, x_adv)

    def _contrastive(
        self, z_nat: torch.Tensor, z_adv: torch.Tensor, y: torch.Tensor, p_nat: torch.Tensor, p_adv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg, g = self.config, self.gather
        if cfg.kind == "scl_at":
            features = torch.stack([z_nat, z_adv], dim=1)  # [N, 2, D]
            return supcon_loss(g(features), g(y), temperature=cfg.temperature, base_temperature=cfg.temperature), None
        losses, counts = zip(
            *(
                ascl_loss_and_counts(
                    g(z),
                    g(labels),
                    g(preds),
                    neg_type=cfg.neg_type,
                    distance=cfg.distance,
                    temperature=cfg.temperature,
                    normalize=cfg.normalize,
                )
                for z, labels, preds in self._latent_groups(z_nat, z_adv, y, p_nat, p_adv)
            ),
            strict=True,
        )
        return torch.stack(losses).mean(), torch.stack(counts).sum(dim=0)

    def _latent_groups(
        self, z_nat: torch.Tensor, z_adv: torch.Tensor, y: torch.Tensor, p_nat: torch.Tensor, p_adv: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The latent sets the contrastive loss runs over (ASCL_SPEC §3.8 combine types); the
        loss is the mean over the sets, which gives combine 2 and 3 their 0.5 weights. In a
        data-parallel run each set is gathered across workers, so it is the global batch's set."""
        cat = torch.cat
        if self.config.views == 1 or self.config.combine == 1:  # [nat v1; nat v2; adv v1; adv v2]
            return [(cat([z_nat, z_adv]), cat([y, y]), cat([p_nat, p_adv]))]
        if self.config.combine == 2:  # natural and adversarial sets separately
            return [(z_nat, y, p_nat), (z_adv, y, p_adv)]
        b = y.shape[0] // 2  # combine 3: each view with its own adversarial counterpart
        return [
            (cat([z_nat[:b], z_adv[:b]]), cat([y[:b], y[:b]]), cat([p_nat[:b], p_adv[:b]])),
            (cat([z_nat[b:], z_adv[b:]]), cat([y[b:], y[b:]]), cat([p_nat[b:], p_adv[b:]])),
        ]


def _output(
    loss: torch.Tensor,
    values: dict[str, torch.Tensor],
    counts: torch.Tensor | None,
    x_adv: torch.Tensor | None = None,
) -> StepOutput:
    names = tuple(values) + (SELECTION if counts is not None else ())
    packed = [v.detach().to(torch.float64) for v in values.values()]
    vector = torch.stack(packed) if counts is None else torch.cat([torch.stack(packed), counts.to(torch.float64)])
    return StepOutput(loss, vector, names, x_adv)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).sum()
