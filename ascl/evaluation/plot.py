"""The robust-accuracy-versus-epsilon plot of an evaluation report, as a PNG."""

from __future__ import annotations

from pathlib import Path

from ascl.evaluation.robust import RobustnessReport


def plot_eps_sweep(report: RobustnessReport, path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    eps = [point["eps"] for point in report.eps_sweep]
    acc = [100 * point["robust_acc"] for point in report.eps_sweep]
    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=120)
    axes.plot(eps, acc, marker="o")
    axes.set_xlabel(f"epsilon ({report.norm})")
    axes.set_ylabel("robust accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
