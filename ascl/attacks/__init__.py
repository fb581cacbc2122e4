"""Attacks: PGD (L-inf, L2, restarts, CE or KL) with FGSM as its one-step case; AutoAttack adapter."""

from ascl.attacks.pgd import Pgd, eval_pgd, fgsm

__all__ = ["Pgd", "eval_pgd", "fgsm"]
