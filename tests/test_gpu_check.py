"""bench/gpu_check.sh, the one call a GPU machine gets, kept working between such machines: its CPU
fall-back (`--quick`) runs every part a CPU can (not the compiling ones), each to a figure, and its summary reads
them (a broken part would otherwise be found only on the device, whose time is scarce)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
QUICK_PARTS = [
    "env",
    "tests",
    "train-graph",
    "authors",
    "profile",
    "epoch",
    "train-eager",
    "autoattack",
    "eval-pgd",
    "precision",
]


def test_the_quick_gpu_check_runs_every_part_on_a_cpu(tmp_path):
    """Without OUT, as documented: the files go to a new directory that the last line names."""
    env = {name: value for name, value in os.environ.items() if name != "OUT"}
    env |= {"PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    run = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = Path(run.stdout.strip().splitlines()[-1].removeprefix("files: "))
    assert out.parent == tmp_path
    status = [line.split()[:2] for line in (out / "status.txt").read_text().splitlines()]
    assert status == [[part, "ok"] for part in QUICK_PARTS], (out / "gpu_check.log").read_text()[-4000:]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    figures = {line["bench"] for line in lines}
    assert {"train_step", "authors_step_emulation", "ascl_train_epoch", "eval_pgd", "eval_precision"} <= figures
    assert "step_profile" in figures
    assert len(list(out.glob("profile-*.txt"))) == 2
    autoattack = [line for line in lines if line["bench"].startswith("eval_autoattack")]
    assert [line["budget_fraction"] for line in autoattack] == [0.1]  # the budget cut the GPU runs too
    assert "0.1 of each attack's budget" in (out / "summary.txt").read_text()
    summary = (out / "summary.txt").read_text()
    # no CUDA here: the GPU tests without compilation are collected and skipped; the compiling ones
    # belong to a part the CPU fall-back leaves out
    assert "GPU tests: 9 run, 0 failed, 0 errors, 9 skipped" in summary
    assert "GPU tests that compile: no report" in summary
