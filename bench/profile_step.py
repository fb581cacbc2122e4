"""Where a training step's time goes: a few steps of one configuration under torch.profiler, after
its warm-up, and the kernels that took the most device time (on a CPU: the operators that took the
most CPU time), per step and as a share of the step.

    python bench/profile_step.py --objective pgd_at --batch-size 512 --table profile.txt
    python bench/profile_step.py --objective ascl-2view --batch-size 128 --cuda-graph --out results.jsonl

The step is the one `bench/bench_train.py` measures (`ascl train`'s, from the objective's paper
preset). One JSON line with the heaviest kernels; `--table` writes the profiler's own table too.
With `--cuda-graph`, kernels inside a replayed graph appear only where the profiler can see into
graphs, so profile the eager step to rank kernels (each kernel runs the same in a graph).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from bench_train import Steps, bench_config, device_name, step_options, step_overrides
from figures import emit
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEventAvg
from torch.profiler import ProfilerActivity, profile


def heaviest(
    averages: list[FunctionEventAvg], *, cuda: bool, steps: int, top: int
) -> tuple[list[tuple[str, float, float]], float]:
    """(name, milliseconds per step, calls per step) of the `top` heaviest entries, and the total per
    step: CUDA kernels by device time, or on a CPU the operators by their own CPU time."""
    if cuda:
        timed = [(a.key, a.self_device_time_total, a.count) for a in averages if a.device_type == DeviceType.CUDA]
    else:
        timed = [(a.key, a.self_cpu_time_total, a.count) for a in averages if a.key.startswith("aten::")]
    timed.sort(key=lambda entry: -entry[1])
    total_ms = sum(us for _, us, _ in timed) / 1000 / steps
    rows = [(name, us / 1000 / steps, count / steps) for name, us, count in timed[:top]]
    return rows, total_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    step_options(parser, objective="pgd_at", batch_size=512)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps before profiling")
    parser.add_argument("--top", type=int, default=15, help="kernels listed")
    parser.add_argument("--table", type=Path, help="write the profiler's table (heaviest 40) here")
    parser.add_argument("--out", help="append the JSON line to this file too")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = bench_config(args.objective, batch_size=args.batch_size, device=device, overrides=step_overrides(args))
    runner = Steps(config, steps=args.steps, warmup=args.warmup, device=device)
    runner.warm_up(args.warmup)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as profiler:
        seconds = runner.run(args.steps).seconds
    averages = profiler.key_averages()
    rows, total_ms = heaviest(list(averages), cuda=cuda, steps=args.steps, top=args.top)
    if args.table:
        sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
        args.table.write_text(averages.table(sort_by=sort_by, row_limit=40, max_name_column_width=90) + "\n")
    t = config.train
    emit(
        {
            "bench": "step_profile",
            "device": device_name(device),
            "torch": torch.__version__,
            "name": args.objective,
            "model": config.model.arch,
            "batch_size": t.batch_size,
            "compile": t.compile,
            "cuda_graph": t.cuda_graph and cuda,
            "cudnn_benchmark": t.cudnn_benchmark and cuda,
            "steps": args.steps,
            "step_ms_profiled": round(seconds / args.steps * 1000, 2),  # with the profiler's own overhead
            "timed_ms_per_step": round(total_ms, 2),
            "timed": "cuda kernels, device time" if cuda else "aten operators, own cpu time",
            "heaviest": [
                {"name": name[:160], "ms_per_step": round(ms, 3), "share": round(ms / total_ms, 4), "calls": calls}
                for name, ms, calls in rows
            ],
        },
        args.out,
    )


if __name__ == "__main__":
    sys.exit(main())
