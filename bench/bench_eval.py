"""Evaluation speed and precision: the library's own `evaluate_robustness`, one JSON line per figure.

    python bench/bench_eval.py pgd --examples 10000 --precision tf32 bf16
    python bench/bench_eval.py autoattack --examples 4096 --budget-fraction 0.1
    python bench/bench_eval.py precision --epochs 8

pgd         PGD-200 (eps 8/255, step 2/255) on synthetic CIFAR-shaped images with ResNet-18, timed
            end to end (clean pass and batch-size probe included), in each precision.
autoattack  AutoAttack ('standard' unless --version) on a subset, against a model no perturbation can fool: every
            attack then runs its whole budget on every example, the worst case of the cost. The
            time per example of each attack is extrapolated to 10,000 examples twice: worst case,
            and for a typical adversarially trained ResNet-18, where fewer examples reach the later
            attacks (fractions below; an assumption, labelled in the output). An attack's time
            per example falls as its batch grows, and a 10,000-image evaluation runs in batches of
            thousands: with --budget-fraction F every attack runs F of its iterations (Square: of
            its queries), each costing the same, on a subset as large as such a batch, and the
            time is scaled by 1/F (slightly pessimistic: each attack's set-up is scaled too).
precision   a model trained on the digits data (PGD-AT, a few epochs), evaluated with PGD-20 and
            AutoAttack 'custom' in fp32, TF32 and bf16: accuracy in each, how many examples change
            verdict against fp32, and the binomial standard error of the accuracy for scale.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from figures import emit
from torch import nn

from ascl.config import ModelConfig
from ascl.data import Split
from ascl.data.sources import CIFAR10_MEAN, CIFAR10_STD
from ascl.evaluation import EvalPlan, evaluate_robustness
from ascl.models import build_model

# Share of the test set that reaches each attack of the standard cascade for an adversarially
# trained CIFAR-10 ResNet-18 (clean ~83%, ~49% after AutoAttack, nearly all of it after APGD-T).
TYPICAL_REACH = {"apgd-ce": 0.83, "apgd-t": 0.52, "fab-t": 0.49, "square": 0.49}
# Where each attack of pyautoattack's AutoAttack keeps its budget: (attribute, budget field).
BUDGETS = {
    "apgd-ce": ("apgd", "n_iter"),
    "apgd-t": ("apgd_targeted", "n_iter"),
    "fab-t": ("fab", "n_iter"),
    "square": ("square", "n_queries"),
}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"


def _classifier(arch: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch), num_classes=10, in_channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _images(n: int, device: torch.device, labels: torch.Tensor | None = None) -> Split:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return Split(
        images.to(device), torch.randint(0, 10, (n,), generator=generator).to(device) if labels is None else labels
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pgd(args: argparse.Namespace, device: torch.device) -> None:
    model, split = _classifier(args.model, device), _images(args.examples, device)
    base = EvalPlan(
        norm="linf", eps=8 / 255, step_size=2 / 255, pgd_steps=args.steps, batch_size=args.batch_size, auto_batch=True
    )
    evaluate_robustness(model, split.head(256), replace(base, pgd_steps=2))  # cuDNN plans, allocator
    for precision in args.precision:
        _sync(device)
        start = time.perf_counter()
        report = evaluate_robustness(model, split, replace(base, precision=precision))
        _sync(device)
        seconds = time.perf_counter() - start
        emit(
            {
                "bench": "eval_pgd",
                "device": device_name(device),
                "torch": torch.__version__,
                "model": args.model,
                "examples": args.examples,
                "pgd_steps": args.steps,
                "precision": precision,
                "batch_size": report.batch_size,
                "seconds": round(seconds, 2),
                "attack_steps_per_s": round(args.examples * args.steps / seconds),
            },
            args.out,
        )


class NeverFooled(nn.Module):
    """Class 0 by a margin no eps-ball perturbation can overturn, with the whole network (and its
    gradients, scaled down) computed on every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, z = self.model(x)
        margin = torch.zeros(logits.shape[1], device=x.device)
        margin[0] = 1e4
        return logits.float() * 1e-3 + margin, z


class AttackClock:
    """Seconds per AutoAttack attack, from the evaluation's progress calls."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self.examples = device, {}, {}
        self.current: tuple[str, float] | None = None

    def start(self, attack: str, total: int) -> None:
        self.stop()
        self.current, self.examples[attack] = (attack, time.perf_counter()), total

    def advance(self, examples: int) -> None:
        pass

    def stop(self) -> None:
        if self.current is not None:
            _sync(self.device)
            name, began = self.current
            self.seconds[name] = time.perf_counter() - began
            self.current = None


def cut_budgets(fraction: float) -> dict[str, float]:
    """Make every AutoAttack built from now on run `fraction` of each attack's budget; the returned
    dict fills with each attack's budget as run over its budget in full (rounding)."""
    import pyautoattack

    run: dict[str, float] = {}

    class Cut(pyautoattack.AutoAttack):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # the version's budgets are set here
            for name, (attack, field) in BUDGETS.items():
                full = getattr(getattr(self, attack), field)
                cut = max(1, round(full * fraction))
                setattr(getattr(self, attack), field, cut)
                run[name] = cut / full

    pyautoattack.AutoAttack = Cut  # the evaluation imports it when it runs
    return run


def bench_autoattack(args: argparse.Namespace, device: torch.device) -> None:
    if not 0 < args.budget_fraction <= 1:
        raise SystemExit("--budget-fraction is in (0, 1]")
    run_fraction = cut_budgets(args.budget_fraction)
    model = NeverFooled(_classifier(args.model, device))
    split = _images(args.examples, device, labels=torch.zeros(args.examples, dtype=torch.long, device=device))
    for precision in args.precision:
        plan = EvalPlan(
            norm="linf",
            eps=8 / 255,
            step_size=2 / 255,
            pgd_steps=0,
            autoattack=args.version,
            autoattack_examples=args.examples,
            batch_size=args.batch_size,
            auto_batch=True,
            precision=precision,
        )
        clock = AttackClock(device)
        report = evaluate_robustness(model, split, plan, progress=clock)
        clock.stop()
        per_example = {name: clock.seconds[name] / clock.examples[name] / run_fraction[name] for name in clock.seconds}
        emit(
            {
                "bench": f"eval_autoattack_{args.version}",
                "device": device_name(device),
                "torch": torch.__version__,
                "model": args.model,
                "precision": precision,
                "measured_examples": args.examples,
                "batch_size": report.batch_size,
                "attacks": report.autoattack_attacks,
                "budget_fraction": args.budget_fraction,
                "seconds_per_attack": {k: round(v, 2) for k, v in clock.seconds.items()},
                "extrapolated_10k_worst_case_s": round(10_000 * sum(per_example.values())),
                "extrapolated_10k_typical_robust_s": round(
                    10_000 * sum(per_example[name] * TYPICAL_REACH[name] for name in per_example)
                ),
                "note": "extrapolated from the measured subset and budget fraction (seconds_per_attack are"
                " as measured); typical = assumed reach fractions " + json.dumps(TYPICAL_REACH),
            },
            args.out,
        )


def bench_precision(args: argparse.Namespace, device: torch.device) -> None:
    from ascl.experiment import load_classifier, run_experiment
    from ascl.presets import get_preset

    config = get_preset("digits-pgdat").with_overrides(
        {
            "device": device.type,
            "train.epochs": args.epochs,
            "eval.pgd_steps": 1,
            "eval.val_steps": 1,
            "eval.eps_sweep": [],
        }
    )
    with tempfile.TemporaryDirectory() as run_dir:
        run_experiment(config, run_dir=Path(run_dir))
        model, config, data = load_classifier(Path(run_dir) / "last.pt", device=device.type)
    base = replace(
        EvalPlan.from_config(config),
        pgd_steps=20,
        autoattack="custom",
        autoattack_examples=len(data.test),
        eps_sweep=(),
    )
    test = data.test.head(args.examples)
    reports = {p: evaluate_robustness(model, test, replace(base, precision=p)) for p in ("fp32", "tf32", "bf16")}
    reference = reports["fp32"]
    n = reference.robust_examples
    for precision, report in reports.items():
        emit(
            {
                "bench": "eval_precision",
                "device": device_name(device),
                "model": "cnn8 on digits, PGD-AT " + f"{args.epochs} epochs",
                "precision": precision,
                "examples": n,
                "clean_acc": report.clean_acc,
                "pgd20_acc": report.pgd_acc,
                "autoattack_custom_acc": report.autoattack_acc,
                "robust_acc": report.robust_acc,
                "verdicts_changed_vs_fp32": sum(
                    a != b for a, b in zip(report.robust_flags, reference.robust_flags, strict=True)
                ),
                "binomial_std_error": round(math.sqrt(reference.robust_acc * (1 - reference.robust_acc) / n), 4),
            },
            args.out,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["pgd", "autoattack", "precision"])
    parser.add_argument("--examples", type=int, default=10_000, help="images (precision: test images, at most 300)")
    parser.add_argument("--model", default="resnet18", help="architecture for pgd and autoattack")
    parser.add_argument("--steps", type=int, default=200, help="PGD steps")
    parser.add_argument("--precision", nargs="+", default=["tf32"], choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=500, help="the smallest batch (auto-batch grows it on CUDA)")
    parser.add_argument("--epochs", type=int, default=8, help="digits training epochs for the precision check")
    parser.add_argument("--version", default="standard", choices=["standard", "custom"], help="AutoAttack version")
    parser.add_argument(
        "--budget-fraction", type=float, default=1.0, help="autoattack: run this share of each attack's iterations"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="append the JSON lines to this file too")
    args = parser.parse_args()
    device = torch.device(args.device)
    {"pgd": bench_pgd, "autoattack": bench_autoattack, "precision": bench_precision}[args.what](args, device)


if __name__ == "__main__":
    sys.exit(main())
