"""A finished sweep's summary for its MLflow parent run: a CSV of every trial, the objective over
trials (with the best so far), and for two objectives the trials and their Pareto front."""

from __future__ import annotations

import csv
import io
from typing import Any

from service.api.sweep_schemas import SweepCreate


def summary_files(rows: list[dict[str, Any]], request: SweepCreate) -> dict[str, bytes]:
    files = {"trials.csv": _csv(rows)}
    if rows:
        files["objective.png"] = _objective_plot(rows, request)
        if len(request.objective) == 2:
            files["pareto.png"] = _pareto_plot(rows, request)
    return files


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    columns = list(rows[0]) if rows else ["trial", "job_id", "status"]
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _objective_plot(rows: list[dict[str, Any]], request: SweepCreate) -> bytes:
    plt = _figure()
    objective = request.objective[0]
    done = [(row["trial"], row[objective.metric]) for row in rows if row[objective.metric] is not None]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    if done:
        numbers, values = zip(*done, strict=True)
        axes.scatter(numbers, values, label="trial")
        best, running = [], None
        for value in values:
            running = value if running is None else (max if objective.mode == "max" else min)(running, value)
            best.append(running)
        axes.step(numbers, best, where="post", color="tab:red", label="best so far")
        axes.legend()
    axes.set_xlabel("trial")
    axes.set_ylabel(objective.metric)
    axes.set_title(f"{request.name}: {objective.mode} {objective.metric}")
    axes.grid(alpha=0.3)
    return _png(plt, figure)


def _pareto_plot(rows: list[dict[str, Any]], request: SweepCreate) -> bytes:
    plt = _figure()
    first, second = request.objective
    points = [(row[first.metric], row[second.metric]) for row in rows]
    points = [(x, y) for x, y in points if x is not None and y is not None]
    front = pareto_front(points, maximize=(first.mode == "max", second.mode == "max"))
    figure, axes = plt.subplots(figsize=(5, 4), dpi=120)
    if points:
        axes.scatter(*zip(*points, strict=True), label="trial", alpha=0.6)
    if front:
        axes.plot(*zip(*sorted(front), strict=True), color="tab:red", marker="o", label="Pareto front")
    axes.set_xlabel(first.metric)
    axes.set_ylabel(second.metric)
    axes.legend()
    axes.grid(alpha=0.3)
    return _png(plt, figure)


def pareto_front(points: list[tuple[float, float]], *, maximize: tuple[bool, bool]) -> list[tuple[float, float]]:
    """The points no other point beats in both coordinates (in each one's direction)."""
    sign = tuple(1.0 if up else -1.0 for up in maximize)
    scored = [(sign[0] * x, sign[1] * y, (x, y)) for x, y in points]
    return [point for a, b, point in scored if not any(c >= a and d >= b and (c > a or d > b) for c, d, _ in scored)]
