"""CPU threads for local training: steady-state images/s of a digits epoch with 1..N intra-op
threads, on an idle machine and beside CPU-bound neighbours (a shared machine).

    python bench/bench_threads.py --out bench/results/<machine>-threads.jsonl

Each figure is a fresh process running `run_experiment` (the threads are the config's
`cpu_threads`), epoch 2 of 2 so that one-time costs are excluded; a "neighbour" is a separate
process spinning on one core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from figures import emit


def epoch_images_per_s(preset: str, threads: int) -> float:
    """Epoch 2's steady images/s of a fresh process training `preset` with `threads` threads."""
    command = [sys.executable, __file__, "--one", preset, str(threads)]
    run = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    return float(run.stdout.strip().splitlines()[-1])


def _one(preset: str, threads: int) -> None:
    from pathlib import Path

    from ascl.experiment import run_experiment
    from ascl.presets import get_preset

    overrides = {
        "train.epochs": 2,
        "cpu_threads": threads,
        "eval.pgd_steps": 0,
        "eval.val_steps": 0,
        "eval.eps_sweep": [],
    }
    with tempfile.TemporaryDirectory() as run_dir:
        result = run_experiment(get_preset(preset).with_overrides(overrides), run_dir=Path(run_dir))
    print(result.history[-1]["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["digits-ascl", "digits-pgdat"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--neighbours", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="append the JSON lines to this file too")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one[0], int(args.one[1]))
        return
    for neighbours in args.neighbours:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
        try:
            time.sleep(1.0)
            for preset in args.presets:
                for threads in args.threads:
                    figures = []
                    for _ in range(args.repeats):
                        figures.append(epoch_images_per_s(preset, threads))
                    row = {
                        "bench": "cpu_threads",
                        "preset": preset,
                        "cores": len(os.sched_getaffinity(0)),
                        "neighbours": neighbours,
                        "threads": threads,
                        "images_per_s": sorted(round(f, 1) for f in figures),
                        "load_1min": round(os.getloadavg()[0], 2),
                    }
                    emit(row, args.out)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()


if __name__ == "__main__":
    sys.exit(main())
