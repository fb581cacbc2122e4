"""The promotion rules and the Pareto front, as pure functions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from service.models.figures import Figures
from service.models.plot import Point, comparison_figure, pareto_front
from service.models.promotion import decide


def figures(clean: float, robust: float | None, pgd: float = 0.3) -> Figures:
    return Figures(
        norm="linf", epsilon=8 / 255, clean_acc=clean, pgd_acc=pgd, pgd_steps=20, autoattack_acc=robust,
        autoattack_version="standard" if robust is not None else None, examples=1000, eval_job_id="j",
        eval_run_id="r",
    )  # fmt: skip


def test_figures_survive_the_round_trip_through_version_tags():
    shown = figures(0.83, None, pgd=0.51)
    assert Figures.from_tags(shown.to_tags()) == shown
    assert shown.to_tags()["robustness.report"] == "runs:/r/report.json"
    assert Figures.from_tags({"robustness.clean_acc": "x"}) is None


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("pgd_acc", "inf"),
        ("pgd_acc", "nan"),
        ("clean_acc", "1.5"),
        ("autoattack_acc", "-0.1"),
        ("epsilon", "inf"),
        ("epsilon", "-0.1"),
        ("examples", "0"),
        ("eval_run", "abc/../../x"),
        ("autoattack_version", "standard\nforged"),
    ],
)
def test_figures_no_evaluation_could_have_written_are_no_figures(tag, value):
    """The tags are editable by anyone with MLflow rights: a champion at an accuracy of inf could
    never be replaced, and PostgreSQL's JSON refuses it (a server error)."""
    shown = figures(0.83, 0.49)
    assert Figures.from_tags(shown.to_tags()) == shown
    assert Figures.from_tags({**shown.to_tags(), f"robustness.{tag}": value}) is None


def test_autoattack_is_compared_when_it_ran_else_pgd():
    assert figures(0.8, 0.4).robust_acc == 0.4
    assert figures(0.8, None, pgd=0.45).robust_acc == 0.45


def test_the_clean_margin_is_inclusive_and_the_first_champion_needs_figures():
    champion = figures(0.90, 0.40)
    at_margin = decide(version="2", candidate=figures(0.88, 0.41), holder="1", champion=champion, max_clean_drop=0.02)
    assert at_margin.promoted
    over = decide(version="2", candidate=figures(0.879, 0.41), holder="1", champion=champion, max_clean_drop=0.02)
    assert not over.promoted
    assert decide(version="1", candidate=figures(0.5, 0.1), holder=None, champion=None, max_clean_drop=0).promoted
    assert not decide(version="1", candidate=None, holder=None, champion=None, max_clean_drop=1).promoted


def test_the_pareto_front_keeps_only_undominated_versions():
    points = [
        Point(version="1", clean_acc=0.9, robust_acc=0.3),
        Point(version="2", clean_acc=0.8, robust_acc=0.4),
        Point(version="3", clean_acc=0.8, robust_acc=0.35),  # dominated by 2
        Point(version="4", clean_acc=0.7, robust_acc=0.4),  # dominated by 2 (equal robust, less clean)
    ]
    assert [p.version for p in pareto_front(points)] == ["2", "1"]


def test_the_pareto_front_is_the_undominated_points_of_any_set():
    import random

    def dominates(q: Point, p: Point) -> bool:
        higher = q.clean_acc > p.clean_acc or q.robust_acc > p.robust_acc
        return q.clean_acc >= p.clean_acc and q.robust_acc >= p.robust_acc and higher

    chance = random.Random(7)
    for _ in range(200):  # coarse values: many ties and twins
        points = [
            Point(version=str(i), clean_acc=chance.randint(0, 5) / 5, robust_acc=chance.randint(0, 5) / 5)
            for i in range(chance.randint(0, 12))
        ]
        expected = {p.version for p in points if not any(dominates(q, p) for q in points)}
        front = pareto_front(points)
        assert {p.version for p in front} == expected
        assert [p.clean_acc for p in front] == sorted(p.clean_acc for p in front)


@pytest.mark.parametrize("count", [0, 1])
def test_a_plot_of_less_than_two_versions_spans_the_whole_scale(count):
    """Matplotlib's own limits span the one point (75.9 % to 76.1 %), or nothing (-0.04 % to 0.04 %)."""
    points = [Point(version="1", clean_acc=0.76, robust_acc=0.31)][:count]
    figure = comparison_figure("m", points, threat_model="linf eps=0.0314")
    try:
        axes = figure.axes[0]
        assert (axes.get_xlim(), axes.get_ylim()) == ((0.0, 100.0), (0.0, 100.0))
    finally:
        plt.close(figure)
