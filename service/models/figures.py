"""A version's robustness figures, as MLflow model-version tags: written by the control plane when
the version's standard evaluation succeeds, read back by the API (promotion, listings, plots)."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from typing import Any

from ascl.config import Norm

PREFIX = "robustness."
REPORT_ARTIFACT = "report.json"  # the eval run's artifacts, logged by the attempt runner
PLOT_ARTIFACT = "eps_sweep.png"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")  # job ids, MLflow run ids, AutoAttack versions


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    norm: str
    epsilon: float
    clean_acc: float
    pgd_acc: float
    pgd_steps: int
    autoattack_acc: float | None
    autoattack_version: str | None
    examples: int  # every figure was measured on these test examples
    eval_job_id: str | None
    eval_run_id: str | None

    @property
    def robust_acc(self) -> float:
        """The figure promotion compares: AutoAttack when it ran (the stronger attack), else PGD."""
        return self.autoattack_acc if self.autoattack_acc is not None else self.pgd_acc

    def same_threat_model(self, other: Figures) -> bool:
        return self.norm == other.norm and math.isclose(self.epsilon, other.epsilon, rel_tol=1e-6, abs_tol=1e-9)

    @property
    def threat_model(self) -> str:
        return f"{self.norm} eps={self.epsilon:.6g}"

    def to_tags(self) -> dict[str, str]:
        tags = {
            "threat_model": self.threat_model,
            "norm": self.norm,
            "epsilon": repr(self.epsilon),
            "clean_acc": repr(self.clean_acc),
            "pgd_acc": repr(self.pgd_acc),
            "pgd_steps": str(self.pgd_steps),
            "autoattack_acc": "" if self.autoattack_acc is None else repr(self.autoattack_acc),
            "autoattack_version": self.autoattack_version or "",
            "examples": str(self.examples),
            "eval_job": self.eval_job_id or "",
            "eval_run": self.eval_run_id or "",
        }
        if self.eval_run_id:
            tags |= {
                "report": f"runs:/{self.eval_run_id}/{REPORT_ARTIFACT}",
                "plot": f"runs:/{self.eval_run_id}/{PLOT_ARTIFACT}",
            }
        return {PREFIX + key: value for key, value in tags.items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Figures | None:
        """None when the version carries no (readable) figures: not evaluated yet."""
        get = {key.removeprefix(PREFIX): value for key, value in tags.items() if key.startswith(PREFIX)}
        if get.get("norm") not in typing.get_args(Norm):  # tags anyone with MLflow rights may edit
            return None
        try:
            figures = cls(
                norm=get["norm"],
                epsilon=float(get["epsilon"]),
                clean_acc=float(get["clean_acc"]),
                pgd_acc=float(get["pgd_acc"]),
                pgd_steps=int(get["pgd_steps"]),
                autoattack_acc=float(get["autoattack_acc"]) if get.get("autoattack_acc") else None,
                autoattack_version=get.get("autoattack_version") or None,
                examples=int(get["examples"]),
                eval_job_id=get.get("eval_job") or None,
                eval_run_id=get.get("eval_run") or None,
            )
        except (KeyError, ValueError):
            return None
        return figures if figures._plausible() else None

    def _plausible(self) -> bool:
        """What an evaluation can have written: 'inf' parses as a float, and a champion at an accuracy
        of inf could never be replaced (PostgreSQL's JSON refuses it outright)."""
        accuracies = [self.clean_acc, self.pgd_acc] + ([] if self.autoattack_acc is None else [self.autoattack_acc])
        return (
            all(0.0 <= acc <= 1.0 for acc in accuracies)  # False for NaN too
            and math.isfinite(self.epsilon)
            and self.epsilon >= 0  # 0: a model trained and evaluated without attacks
            and self.pgd_steps >= 0
            and self.examples > 0
            and all(_IDENTIFIER.fullmatch(i) for i in (self.eval_job_id, self.eval_run_id) if i is not None)
            and (self.autoattack_version is None or _IDENTIFIER.fullmatch(self.autoattack_version) is not None)
        )

    @classmethod
    def from_report(cls, report: dict[str, Any], *, eval_job_id: str, eval_run_id: str | None) -> Figures:
        """From an evaluation report's summary (ascl RobustnessReport.summary())."""
        autoattack = report.get("autoattack_acc")
        return cls(
            norm=str(report["norm"]),
            epsilon=float(report["eps"]),
            clean_acc=float(report["clean_acc"]),
            pgd_acc=float(report["pgd_acc"] if report.get("pgd_acc") is not None else report["robust_acc"]),
            pgd_steps=int(report.get("pgd_steps") or 0),
            autoattack_acc=None if autoattack is None else float(autoattack),
            autoattack_version=None if autoattack is None else str(report.get("autoattack_version")),
            examples=int(report.get("pgd_examples") or report["examples"]),
            eval_job_id=eval_job_id,
            eval_run_id=eval_run_id,
        )

    def compared(self) -> dict[str, float]:
        return {"clean_acc": self.clean_acc, "robust_acc": self.robust_acc, "epsilon": self.epsilon}
