"""Robustness evaluation in eval mode: clean accuracy, PGD-k with restarts, AutoAttack, per-example
robust flags and an epsilon sweep.

The report keeps two populations apart. PGD runs on the whole split (`pgd_acc` over
`pgd_examples`). The robust accuracy is stated on one set, the first `robust_examples` examples of
the split (all of them, or the first `eval.autoattack_examples` when AutoAttack runs): an example
counts as robust when it is classified correctly clean and under every attack in `robust_attacks`,
all of which ran on exactly that set; `robust_clean_acc` is the clean accuracy on the same set.

Precision is chosen by the plan: fp32 (TF32 off), TF32 (matmuls and convolutions in TF32), or bf16
autocast with the losses in fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ascl.attacks import Pgd, eval_pgd
from ascl.data import Split, eval_batches
from ascl.evaluation.autoattack import autoattack_flags
from ascl.evaluation.batching import eval_batch_size
from ascl.evaluation.plan import EvalPlan
from ascl.evaluation.progress import AttackProgress, NoProgress
from ascl.models.mode import model_mode
from ascl.runtime import autocast, tf32


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustnessReport:
    norm: str
    eps: float
    precision: str
    batch_size: int  # examples per attack batch
    examples: int  # the whole split
    clean_acc: float  # on the whole split
    pgd_acc: float | None  # PGD on the whole split
    pgd_examples: int
    pgd_steps: int
    pgd_restarts: int
    robust_acc: float  # worst case over robust_attacks, on the robust set
    robust_clean_acc: float  # clean accuracy on the robust set
    robust_examples: int  # the robust set: the first robust_examples examples of the split
    robust_attacks: list[str] = field(default_factory=list)
    autoattack_acc: float | None = None  # AutoAttack alone, on the robust set
    autoattack_version: str = "none"
    autoattack_attacks: list[str] = field(default_factory=list)  # the AutoAttack attacks that ran, in order
    autoattack_examples: int = 0
    robust_flags: list[bool] = field(default_factory=list)  # per example of the robust set
    eps_sweep: list[dict[str, float]] = field(default_factory=list)  # [{eps, robust_acc}], whole split

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
    model: nn.Module,
    split: Split,
    attack: Pgd,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
    progress: AttackProgress | None = None,
    name: str = "pgd",
) -> torch.Tensor:
    """bool [N]: correctly classified after the attack (which runs in eval mode)."""
    progress = progress or NoProgress()
    progress.start(name, len(split))
    flags = []
    with model_mode(model, training=False):
        for x, y in eval_batches(split, batch_size):
            x_adv = attack(model, x, y, generator=generator)
            with torch.no_grad(), autocast(attack.autocast_dtype, x.device):
                flags.append(model(x_adv)[0].argmax(1) == y)
            progress.advance(len(y))
    return torch.cat(flags)


def evaluate_robustness(
    model: nn.Module, split: Split, plan: EvalPlan, *, progress: AttackProgress | None = None
) -> RobustnessReport:
    progress = progress or NoProgress()
    with tf32(plan.precision != "fp32"):
        return _evaluate(model, split, plan, progress)


def _evaluate(model: nn.Module, split: Split, plan: EvalPlan, progress: AttackProgress) -> RobustnessReport:
    dtype = plan.autocast_dtype()
    batch = eval_batch_size(model, split, plan)
    generator = torch.Generator(device=split.labels.device).manual_seed(plan.seed)
    clean = predictions_correct(model, split, batch_size=batch)
    n = min(plan.autoattack_examples, len(split)) if plan.autoattack != "none" else len(split)
    robust, attacks = clean[:n].clone(), []
    pgd_acc = None
    if plan.pgd_steps > 0:
        pgd = eval_pgd(
            norm=plan.norm,
            eps=plan.eps,
            step_size=plan.step_size,
            steps=plan.pgd_steps,
            restarts=plan.pgd_restarts,
            autocast_dtype=dtype,
        )
        name = f"pgd-{plan.pgd_steps}" + (f"x{plan.pgd_restarts}" if plan.pgd_restarts > 1 else "")
        pgd_flags = attack_correct(
            model, split, pgd, batch_size=batch, generator=generator, progress=progress, name=name
        )
        pgd_acc = _mean(pgd_flags)
        robust &= pgd_flags[:n]
        attacks.append(name)
    aa_acc, aa_attacks = None, tuple[str, ...]()
    if plan.autoattack != "none":
        subset = split.head(n)
        result = autoattack_flags(
            model,
            subset.images.float().div(255.0),
            subset.labels,
            norm=plan.norm,
            eps=plan.eps,
            version=plan.autoattack,
            batch_size=batch,
            progress=progress,
            seed=plan.seed,
            autocast_dtype=dtype,
        )
        robust &= result.flags
        aa_acc, aa_attacks = _mean(result.flags), result.attacks
        attacks.extend(result.attacks)
    return RobustnessReport(
        norm=plan.norm,
        eps=plan.eps,
        precision=plan.precision_on(split.labels.device),
        batch_size=batch,
        examples=len(split),
        clean_acc=_mean(clean),
        pgd_acc=pgd_acc,
        pgd_examples=len(split) if pgd_acc is not None else 0,
        pgd_steps=plan.pgd_steps,
        pgd_restarts=plan.pgd_restarts,
        robust_acc=_mean(robust),
        robust_clean_acc=_mean(clean[:n]),
        robust_examples=n,
        robust_attacks=attacks,
        autoattack_acc=aa_acc,
        autoattack_version=plan.autoattack,
        autoattack_attacks=list(aa_attacks),
        autoattack_examples=n if aa_acc is not None else 0,
        robust_flags=robust.tolist(),
        eps_sweep=_eps_sweep(model, split, plan, clean, batch, generator, progress),
    )


def _eps_sweep(
    model: nn.Module,
    split: Split,
    plan: EvalPlan,
    clean: torch.Tensor,
    batch: int,
    generator: torch.Generator,
    progress: AttackProgress,
) -> list[dict[str, float]]:
    points = []
    for e in plan.eps_sweep:
        step = 2.5 * e / max(plan.sweep_steps, 1)
        pgd = eval_pgd(
            norm=plan.norm, eps=e, step_size=step, steps=plan.sweep_steps, autocast_dtype=plan.autocast_dtype()
        )
        flags = attack_correct(
            model,
            split,
            pgd,
            batch_size=batch,
            generator=generator,
            progress=progress,
            name=f"pgd-{plan.sweep_steps} eps={e:g}",
        )
        points.append({"eps": e, "robust_acc": _mean(flags & clean)})
    return points


def _mean(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else float("nan")
