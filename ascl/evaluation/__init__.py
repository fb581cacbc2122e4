"""Robustness evaluation: clean accuracy, PGD, AutoAttack, worst-case flags, epsilon sweeps."""

from ascl.evaluation.plot import plot_eps_sweep
from ascl.evaluation.robust import RobustnessReport, attack_correct, eval_pgd, evaluate_robustness, predictions_correct

__all__ = [
    "RobustnessReport",
    "attack_correct",
    "eval_pgd",
    "evaluate_robustness",
    "plot_eps_sweep",
    "predictions_correct",
]
