"""Robustness evaluation in eval mode: clean accuracy, PGD-k with restarts, AutoAttack, per-example
robust flags (robust = correct on the clean image and under every attack run on it), and an
epsilon sweep. Evaluation runs in fp32, so bf16 rounding cannot mask gradients."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ascl.attacks import Pgd
from ascl.data import Split, eval_batches
from ascl.evaluation.autoattack import autoattack_flags
from ascl.models.mode import model_mode


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustnessReport:
    norm: str
    eps: float
    examples: int
    clean_acc: float
    pgd_acc: float | None
    pgd_steps: int
    pgd_restarts: int
    autoattack_acc: float | None = None  # on the first `autoattack_examples` images
    autoattack_version: str = "none"
    autoattack_examples: int = 0
    robust_acc: float = 0.0  # worst case over every attack run on each example
    robust_flags: list[bool] = field(default_factory=list)
    eps_sweep: list[dict[str, float]] = field(default_factory=list)  # [{eps, robust_acc}]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> dict[str, object]:
        """Everything but the per-example flags."""
        return {k: v for k, v in self.as_dict().items() if k != "robust_flags"}


def predictions_correct(model: nn.Module, split: Split, *, batch_size: int) -> torch.Tensor:
    flags = []
    with model_mode(model, training=False), torch.inference_mode():
        for x, y in eval_batches(split, batch_size):
            flags.append(model(x)[0].argmax(1) == y)
    return torch.cat(flags)


def attack_correct(
    model: nn.Module, split: Split, attack: Pgd, *, batch_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """bool [N]: correctly classified after the attack (which runs in eval mode)."""
    flags = []
    with model_mode(model, training=False):
        for x, y in eval_batches(split, batch_size):
            x_adv = attack(model, x, y, generator=generator)
            with torch.no_grad():
                flags.append(model(x_adv)[0].argmax(1) == y)
    return torch.cat(flags)


def eval_pgd(*, norm: str, eps: float, step_size: float, steps: int, restarts: int = 1) -> Pgd:
    """PGD for evaluation: uniform random start, CE, BatchNorm in eval mode (ASCL_SPEC §2.4)."""
    return Pgd(norm=norm, eps=eps, step_size=step_size, steps=steps, init="uniform", restarts=restarts, bn_mode="eval")


def evaluate_robustness(
    model: nn.Module,
    split: Split,
    *,
    norm: str,
    eps: float,
    step_size: float,
    pgd_steps: int,
    pgd_restarts: int = 1,
    autoattack: str = "none",
    autoattack_examples: int = 1000,
    eps_sweep: tuple[float, ...] = (),
    sweep_steps: int = 50,
    batch_size: int = 500,
    seed: int = 0,
) -> RobustnessReport:
    generator = torch.Generator(device=split.labels.device).manual_seed(seed)
    clean = predictions_correct(model, split, batch_size=batch_size)
    robust = clean.clone()
    pgd_acc = None
    if pgd_steps > 0:
        pgd = eval_pgd(norm=norm, eps=eps, step_size=step_size, steps=pgd_steps, restarts=pgd_restarts)
        pgd_flags = attack_correct(model, split, pgd, batch_size=batch_size, generator=generator)
        robust &= pgd_flags
        pgd_acc = _mean(pgd_flags)
    aa_acc, aa_n = None, 0
    if autoattack != "none":
        aa_n = min(autoattack_examples, len(split))
        subset = split.head(aa_n)
        x = subset.images.float().div(255.0)
        aa_flags = autoattack_flags(
            model, x, subset.labels, norm=norm, eps=eps, version=autoattack, batch_size=batch_size, seed=seed
        )
        robust[:aa_n] &= aa_flags
        aa_acc = _mean(aa_flags)
    sweep = [
        {
            "eps": e,
            "robust_acc": _mean(
                attack_correct(
                    model,
                    split,
                    eval_pgd(norm=norm, eps=e, step_size=2.5 * e / max(sweep_steps, 1), steps=sweep_steps),
                    batch_size=batch_size,
                    generator=generator,
                )
                & clean
            ),
        }
        for e in eps_sweep
    ]
    return RobustnessReport(
        norm=norm,
        eps=eps,
        examples=len(split),
        clean_acc=_mean(clean),
        pgd_acc=pgd_acc,
        pgd_steps=pgd_steps,
        pgd_restarts=pgd_restarts,
        autoattack_acc=aa_acc,
        autoattack_version=autoattack,
        autoattack_examples=aa_n,
        robust_acc=_mean(robust),
        robust_flags=robust.tolist(),
        eps_sweep=sweep,
    )


def _mean(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else float("nan")
