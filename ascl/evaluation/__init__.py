"""Robustness evaluation: clean accuracy, PGD, AutoAttack, worst-case flags, epsilon sweeps."""

from ascl.evaluation.plan import EvalPlan
from ascl.evaluation.plot import plot_eps_sweep
from ascl.evaluation.progress import AttackProgress, NoProgress
from ascl.evaluation.robust import RobustnessReport, attack_correct, evaluate_robustness, predictions_correct

__all__ = [
    "AttackProgress",
    "EvalPlan",
    "NoProgress",
    "RobustnessReport",
    "attack_correct",
    "evaluate_robustness",
    "plot_eps_sweep",
    "predictions_correct",
]
