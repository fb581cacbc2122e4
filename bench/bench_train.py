"""Training-step throughput: images/s, achieved TFLOP/s and peak memory for one configuration.

    python bench/bench_train.py --objective ascl-2view --model resnet18 --batch-size 128 --precision bf16
    python bench/bench_train.py --suite issue --out bench/results/<device>.jsonl

One JSON line per figure. "images/s" counts natural images per optimizer step divided by the step
time, each view counted (the 2-view recipe at batch 128 is 256 images per step), as in
PERFORMANCE.md. Data is synthetic and resident on the device; the step is the library's own
(`ascl.training.loop.train_epoch`), so this measures exactly what training runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from ascl.attacks import Pgd
from ascl.config import AttackConfig, ModelConfig, ObjectiveConfig, OptimConfig
from ascl.data import Split, train_batches
from ascl.data.sources import CIFAR10_MEAN, CIFAR10_STD
from ascl.models import build_model
from ascl.runtime import autocast_dtype
from ascl.training.callbacks import NullReporter, never_stop
from ascl.training.loop import train_epoch
from ascl.training.objectives import Objective

OBJECTIVES = {
    "standard": ObjectiveConfig(kind="standard", natural_weight=1.0),
    "pgd_at": ObjectiveConfig(kind="pgd_at", natural_weight=0.0),
    "trades": ObjectiveConfig(kind="trades", natural_weight=1.0, robust_weight=6.0, kl_reduction="batchmean"),
    "ascl": ObjectiveConfig(kind="ascl", smoothness_weight=2.0, temperature=0.2),
    "ascl-2view": ObjectiveConfig(kind="ascl", smoothness_weight=2.0, temperature=0.2, views=2),
}
# The acceptance figures: the paper recipe at batch 128, and PGD-AT / ASCL at batch 512.
SUITES = {
    "issue": [("ascl-2view", 128), ("pgd_at", 512), ("ascl", 512), ("pgd_at", 128), ("ascl", 128)],
    "cpu": [("ascl-2view", 32), ("pgd_at", 64), ("ascl", 64), ("standard", 64)],
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def bench(
    objective_name: str,
    *,
    model_name: str,
    batch_size: int,
    precision: str,
    compile_mode: str,
    steps: int,
    warmup: int,
    device: torch.device,
    pgd_steps: int,
) -> dict[str, object]:
    torch.manual_seed(0)
    objective_config = OBJECTIVES[objective_name]
    feat_dim = 128 if objective_config.kind in ("ascl", "scl_at") else -1
    model = build_model(
        ModelConfig(arch=model_name, feat_dim=feat_dim),
        num_classes=10,
        in_channels=3,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    ).to(device)
    dtype = autocast_dtype(precision, device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trained = model if compile_mode == "none" else torch.compile(model, mode=compile_mode)
    attack = Pgd.from_config(
        replace(AttackConfig(), steps=pgd_steps, eps=8 / 255, step_size=2 / 255), autocast_dtype=dtype
    )
    objective = Objective(objective_config, attack, dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    n = batch_size * (max(steps, warmup) + 1)
    data = Split(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device),
        torch.randint(0, 10, (n,), device=device),
    )
    views = objective_config.views

    def run(count: int) -> float:
        batches = train_batches(
            data.head(count * batch_size),
            batch_size=batch_size,
            views=views,
            drop_last=True,
            padding=4,
            hflip=True,
            generator=generator,
        )
        _sync(device)
        start = time.perf_counter()
        train_epoch(
            trained,
            objective,
            optimizer,
            batches,
            epoch=0,
            epochs=1,
            steps_per_epoch=count,
            optim_config=OptimConfig(schedule="constant", lr=0.01),
            generator=generator,
            reporter=NullReporter(),
            should_stop=never_stop,
            log_every=10**9,
            post_step_bn_forwards=False,
        )
        _sync(device)
        return time.perf_counter() - start

    run(warmup)  # compilation, cuDNN autotuning, allocator warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = run(steps)
    images = steps * batch_size * views
    flops = _step_flops(model, objective, data, batch_size, views, generator)
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "bench": "train_step",
        "device": device_name(device),
        "torch": torch.__version__,
        "objective": objective_name,
        "model": model_name,
        "batch_size": batch_size,
        "views": views,
        "images_per_step": batch_size * views,
        "pgd_steps": pgd_steps,
        "precision": "bf16" if dtype else "fp32",
        "compile": compile_mode,
        "steps": steps,
        "seconds": round(seconds, 4),
        "images_per_s": round(images / seconds, 1),
        "tflops_per_s": round(flops * steps / seconds / 1e12, 3),
        "peak_memory_gib": round(peak / 2**30, 3),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
    }


def _step_flops(
    model: torch.nn.Module, objective: Objective, data: Split, batch_size: int, views: int, generator: torch.Generator
) -> float:
    """FLOPs of one eager training step (forward and backward of every pass, attack included)."""
    x, y = next(
        train_batches(
            data.head(batch_size),
            batch_size=batch_size,
            views=views,
            drop_last=True,
            padding=4,
            hflip=True,
            generator=generator,
        )
    )
    with FlopCounterMode(display=False) as counter:
        objective(model, x, y, generator=generator).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="ascl-2view")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune"])
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--suite", choices=sorted(SUITES), help="run a fixed list of (objective, batch) figures")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="append the JSON lines to this file too")
    args = parser.parse_args()
    device = torch.device(args.device)
    figures = SUITES[args.suite] if args.suite else [(args.objective, args.batch_size)]
    for objective_name, batch_size in figures:
        row = bench(
            objective_name,
            model_name=args.model,
            batch_size=batch_size,
            precision=args.precision,
            compile_mode=args.compile,
            steps=args.steps,
            warmup=args.warmup,
            device=device,
            pgd_steps=args.pgd_steps,
        )
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
