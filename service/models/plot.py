"""The comparison plot of a model's versions: clean against robust accuracy, one point per
evaluated version, the Pareto front (no other version is at least as good on both) marked."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    version: str
    clean_acc: float
    robust_acc: float


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no other point dominates (at least as high on both axes, higher on one), by clean
    accuracy: one pass from the most accurate down, keeping each point more robust than all before."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (-p.clean_acc, -p.robust_acc)):
        twin = bool(front) and (front[-1].clean_acc, front[-1].robust_acc) == (p.clean_acc, p.robust_acc)
        if twin or not front or p.robust_acc > front[-1].robust_acc:
            front.append(p)
    return front[::-1]


MAX_LABELS = 40  # beyond this many points only the front's are labelled: thousands of labels took a minute


def comparison_png(name: str, points: list[Point], *, threat_model: str) -> bytes:
    figure = comparison_figure(name, points, threat_model=threat_model)
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def comparison_figure(name: str, points: list[Point], *, threat_model: str) -> Figure:
    """The plot, open: the caller closes it (pyplot keeps every figure until then)."""
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=110)
    try:
        front = pareto_front(points)
        axes.scatter([100 * p.clean_acc for p in points], [100 * p.robust_acc for p in points], color="tab:gray")
        if front:
            axes.plot(
                [100 * p.clean_acc for p in front],
                [100 * p.robust_acc for p in front],
                marker="o",
                color="tab:red",
                label="Pareto front",
            )
            axes.legend(loc="lower left")
        for p in points if len(points) <= MAX_LABELS else front:
            axes.annotate(
                f"v{p.version}", (100 * p.clean_acc, 100 * p.robust_acc), textcoords="offset points", xytext=(4, 4)
            )
        if not points:
            axes.text(0.5, 0.5, "no evaluated versions yet", ha="center", va="center", transform=axes.transAxes)
        if len(points) < 2:  # nothing to compare: the whole scale, not one spanning a point (or none)
            axes.set_xlim(0, 100)
            axes.set_ylim(0, 100)
        axes.set_xlabel("clean accuracy (%)")
        axes.set_ylabel(f"robust accuracy (%), {threat_model}")
        axes.set_title(name[:60])
        axes.grid(alpha=0.3)
        figure.tight_layout()
    except BaseException:
        plt.close(figure)
        raise
    return figure
