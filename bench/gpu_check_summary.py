"""The summary table of bench/gpu_check.sh, from the files it wrote: status.txt, pytest-tests.xml and
pytest-compile.xml (the GPU tests without and with torch.compile) and results.jsonl in the directory
given as the only argument."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def tests_line(name: str, path: Path) -> str:
    if not path.is_file():
        return f"{name}: no report (the part did not run or did not finish)"
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return f"{name}: unreadable report"
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        case.get("name", "?")
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    line = name + ": {tests} run, {failures} failed, {errors} errors, {skipped} skipped".format(**counts)
    return line + ("\n  failed: " + ", ".join(failed) if failed else "")


def rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_table(train: list[dict[str, Any]]) -> None:
    print(f"\ntraining step on {train[0]['device']} (images/s count every view; warm-up = compilation/capture, apart)")
    print(
        f"  {'objective':12} {'batch':>5} {'img/step':>8} {'compile':>16} {'graph':>5} {'tuned':>5} {'img/s':>9} "
        f"{'TFLOP/s':>8} {'warmup s':>8} {'peak GiB':>8}"
    )
    for r in train:
        graph, tuned = ("yes" if r.get(key) else "no" for key in ("cuda_graph", "cudnn_benchmark"))
        print(
            f"  {r.get('name', r['objective'])!s:12} {r['batch_size']:>5} {r['images_per_step']:>8} "
            f"{r['compile']!s:>16} {graph:>5} {tuned:>5} {r['images_per_s']:>9} {r['tflops_per_s']:>8} "
            f"{r['warmup_seconds']:>8} {r['peak_memory_gib']:>8}"
        )
    print("  (tuned: cuDNN's autotuner chose the convolution algorithms, train.cudnn_benchmark)")


def profile_lines(r: dict[str, Any]) -> None:
    print(
        f"\nwhere the {r['name']} step's time goes, batch {r['batch_size']}, {r['timed']}: "
        f"{r['timed_ms_per_step']} ms per step (profiled step {r['step_ms_profiled']} ms)"
    )
    for k in r["heaviest"][:8]:
        print(f"  {k['share']:6.1%} {k['ms_per_step']:9.3f} ms  x{k['calls']:<5g} {k['name'][:70]}")


def figure_line(r: dict[str, Any]) -> None:
    if r["bench"] == "step_profile":
        profile_lines(r)
    elif r["bench"] == "authors_step_emulation":
        print(f"\nauthors' step (emulation, fp32, 2 x {r['batch_size']} views): {r['images_per_s']} img/s")
    elif r["bench"] == "ascl_train_epoch":
        print(
            f"\nascl train, paper preset, 1 epoch of {r['train_images']:,} synthetic images (2 views), "
            f"train.cuda_graph=true: "
            f"{r['seconds']} s of which warm-up {r['warmup_seconds']} s; steady {r['images_per_s']} img/s; "
            f"whole run with evaluation {r['run_seconds']} s"
        )
    elif r["bench"] == "eval_pgd":
        print(
            f"\nevaluation PGD-{r['pgd_steps']} of {r['examples']} images, {r['model']}, {r['precision']}: "
            f"{r['seconds']} s (batch {r['batch_size']})"
        )
    elif str(r["bench"]).startswith("eval_autoattack"):
        worst, typical = r["extrapolated_10k_worst_case_s"], r["extrapolated_10k_typical_robust_s"]
        print(
            f"\n{r['bench']}, {r['precision']}, measured on {r['measured_examples']} never-fooled examples "
            f"(batch {r['batch_size']}, {r.get('budget_fraction', 1.0)} of each attack's budget): "
            f"{r['seconds_per_attack']}; EXTRAPOLATED to 10,000: worst case "
            f"{worst} s, typical robust model {typical} s"
        )


def precision_table(precision: list[dict[str, Any]]) -> None:
    print(
        f"\nevaluation precision on {precision[0]['model']} ({precision[0]['examples']} test images, "
        f"binomial std error {precision[0]['binomial_std_error']})"
    )
    for r in precision:
        print(
            f"  {r['precision']:5} clean {r['clean_acc']:.4f}  PGD-20 {r['pgd20_acc']:.4f}  "
            f"AA custom {r['autoattack_custom_acc']:.4f}  robust {r['robust_acc']:.4f}  "
            f"verdicts changed vs fp32: {r['verdicts_changed_vs_fp32']}"
        )


def main() -> None:
    out = Path(sys.argv[1])
    figures = rows(out / "results.jsonl")
    print("=" * 100)
    print("GPU check summary")
    status = (out / "status.txt").read_text().split("\n") if (out / "status.txt").is_file() else []
    print("parts: " + " | ".join(line for line in status if line))
    for name, report in (("GPU tests", "pytest-tests.xml"), ("GPU tests that compile", "pytest-compile.xml")):
        print(tests_line(name, out / report))
    train = [r for r in figures if r["bench"] == "train_step"]
    if train:
        training_table(train)
    for r in figures:
        figure_line(r)
    precision = [r for r in figures if r["bench"] == "eval_precision"]
    if precision:
        precision_table(precision)
    print("=" * 100)


if __name__ == "__main__":
    sys.exit(main())
