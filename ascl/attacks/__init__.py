"""Attacks: PGD (L-inf, L2, restarts, CE or KL) with FGSM as its one-step case; AutoAttack adapter."""

from ascl.attacks.pgd import Pgd, fgsm

__all__ = ["Pgd", "fgsm"]
