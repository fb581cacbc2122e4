"""Training-step throughput: images/s, achieved TFLOP/s, warm-up time and peak memory for one
configuration, measured on the library's own step (`build_training` + `train_epoch`, exactly what
`ascl train` runs).

    python bench/bench_train.py --objective ascl-2view --batch-size 128
    python bench/bench_train.py --suite issue --cuda-graph --out bench/results/<device>.jsonl
    python bench/bench_train.py --objective pgd_at --batch-size 512 --compile reduce-overhead

One JSON line per figure. "images/s" counts natural images per optimizer step divided by the step
time, each view counted (the 2-view recipe at batch 128 is 256 images per step). The configuration
is the paper preset of the objective (PGD-10 at 0.031/0.007 in BatchNorm train mode, the authors'
post-step BatchNorm forwards where the preset has them) with synthetic CIFAR-shaped data resident
on the device; `--set` changes any config field, as `ascl train` does.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys

import torch
from figures import emit
from torch.utils.flop_counter import FlopCounterMode

from ascl.config import DataConfig, ExperimentConfig, parse_override
from ascl.data import build_data
from ascl.presets import get_preset
from ascl.runtime import epoch_generator
from ascl.training.assembly import Training, build_training
from ascl.training.callbacks import NullReporter, never_stop
from ascl.training.loop import EpochPlan, EpochResult, train_epoch
from ascl.training.objectives import Networks

PRESET = {  # objective name → (preset, overrides)
    "standard": ("paper-cifar10-resnet18-pgdat", {"objective.kind": "standard", "objective.natural_weight": 1.0}),
    "pgd_at": ("paper-cifar10-resnet18-pgdat", {}),
    "trades": ("paper-cifar10-resnet18-trades", {}),
    "ascl": ("paper-cifar10-resnet18-ascl", {"objective.views": 1}),
    "ascl-2view": ("paper-cifar10-resnet18-ascl", {}),
    "scl_at": (
        "paper-cifar10-resnet18-ascl",
        {
            "objective.kind": "scl_at",
            "objective.views": 1,
            "objective.natural_weight": 1.0,
            "objective.temperature": 0.07,
        },
    ),
}
# The acceptance figures: the paper recipe at batch 128, and PGD-AT / ASCL at batch 512.
SUITES = {
    "issue": [("ascl-2view", 128), ("pgd_at", 512), ("ascl", 512), ("pgd_at", 128), ("ascl", 128)],
    "gpu": [("ascl-2view", 128), ("pgd_at", 512), ("ascl", 512)],  # the three targets, for bench/gpu_check.sh
    "cpu": [("ascl-2view", 32), ("pgd_at", 64), ("ascl", 64), ("standard", 64)],
    "quick": [("ascl-2view", 8), ("pgd_at", 16)],  # bench/gpu_check.sh --quick: the plumbing, not a figure
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def bench_config(
    objective: str, *, batch_size: int, device: torch.device, overrides: dict[str, object]
) -> ExperimentConfig:
    preset, own = PRESET[objective]
    return get_preset(preset).with_overrides(
        {"device": device.type, "train.batch_size": batch_size, "train.log_every": 10**6, **own, **overrides}
    )


class Steps:
    """The library's training for one configuration on synthetic data resident on the device, run a
    given number of steps at a time through the epoch loop `ascl train` uses."""

    def __init__(self, config: ExperimentConfig, *, steps: int, warmup: int, device: torch.device) -> None:
        n = config.train.batch_size * (steps + max(warmup, 4) + 1)
        self.data = build_data(DataConfig(dataset="synthetic", synthetic_size=n + 1, val_size=1), device)
        self.training = build_training(config, self.data, device)
        self.generator = epoch_generator(config.seed, 0, device)
        self.epoch = 0

    def run(self, count: int) -> EpochResult:
        config = self.training.config
        plan = EpochPlan(epoch=self.epoch, epochs=2, steps_per_epoch=count, optim=config.optim, log_every=10**6)
        self.epoch = 1  # the schedule's second epoch from here on: the step is the same
        batches = self.training.epoch_batches(self.data.train.head(count * config.train.batch_size), self.generator)
        return train_epoch(
            self.training, batches, plan, generator=self.generator, reporter=NullReporter(), should_stop=never_stop
        )

    def warm_up(self, warmup: int) -> float:
        """Seconds of the steps that compile, capture, plan cuDNN and fill the allocator."""
        return self.run(max(warmup, self.training.step.warmup_steps)).seconds


def bench(config: ExperimentConfig, *, steps: int, warmup: int, device: torch.device) -> dict[str, object]:
    runner = Steps(config, steps=steps, warmup=warmup, device=device)
    training, data = runner.training, runner.data
    warmup_seconds = runner.warm_up(warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    measured = runner.run(steps)
    assert measured.warmup_seconds == 0.0, "the measured steps must not include warm-up"
    seconds = measured.seconds
    images = steps * training.images_per_step
    t = config.train
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "bench": "train_step",
        "device": device_name(device),
        "torch": torch.__version__,
        "objective": config.objective.kind,
        "model": config.model.arch,
        "batch_size": config.train.batch_size,
        "views": config.objective.views,
        "images_per_step": training.images_per_step,
        "pgd_steps": config.attack.steps,
        "precision": "bf16" if training.objective.autocast_dtype else "fp32",
        "compile": t.compile,
        "cuda_graph": t.cuda_graph and device.type == "cuda",
        "cudnn_benchmark": t.cudnn_benchmark and device.type == "cuda",
        "post_step_bn_forwards": t.post_step_bn_forwards,
        "steps": steps,
        "warmup_seconds": round(warmup_seconds, 2),
        "seconds": round(seconds, 4),
        "images_per_s": round(images / seconds, 1),
        "tflops_per_s": round(_step_flops(training, data.train) * steps / seconds / 1e12, 3),
        "peak_memory_gib": round(peak / 2**30, 3),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
    }


def _step_flops(training: Training, split: object) -> float:
    """FLOPs of one eager training step (forward and backward of every pass, attack included)."""
    generator = torch.Generator(device=training.device).manual_seed(0)
    x, y = next(training.epoch_batches(split, generator))  # type: ignore[arg-type]
    attack = training.objective.attack
    starts = None if attack is None else attack.random_starts(x, generator)
    model = training.model
    with FlopCounterMode(display=False) as counter:
        training.objective(Networks(train=model, attack=model), x, y, starts=starts).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def step_options(parser: argparse.ArgumentParser, *, objective: str, batch_size: int) -> None:
    """The options that choose a step, shared with bench/profile_step.py."""
    parser.add_argument("--objective", choices=sorted(PRESET), default=objective)
    parser.add_argument("--model", default="resnet18", help="model.arch")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="train.batch_size (images before views)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="train.precision")
    parser.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune"])
    parser.add_argument("--cuda-graph", action="store_true", help="train.cuda_graph: capture the whole step")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def step_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "model.arch": args.model,
        "train.precision": args.precision,
        "train.compile": args.compile,
        "train.cuda_graph": args.cuda_graph,
        **dict(parse_override(item) for item in args.overrides),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step_options(parser, objective="ascl-2view", batch_size=128)
    parser.add_argument("--steps", type=int, default=20, help="measured steps")
    parser.add_argument("--warmup", type=int, default=3, help="steps before measuring (at least what the step needs)")
    parser.add_argument("--suite", choices=sorted(SUITES), help="run a fixed list of (objective, batch) figures")
    parser.add_argument("--out", help="append the JSON lines to this file too")
    args = parser.parse_args()
    device = torch.device(args.device)
    overrides = step_overrides(args)
    figures = SUITES[args.suite] if args.suite else [(args.objective, args.batch_size)]
    for objective, batch_size in figures:
        config = bench_config(objective, batch_size=batch_size, device=device, overrides=overrides)
        row = {"name": objective, **bench(config, steps=args.steps, warmup=args.warmup, device=device)}
        emit(row, args.out)


if __name__ == "__main__":
    sys.exit(main())
