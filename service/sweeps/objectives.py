"""What a sweep optimises, read from its trial jobs: `val.<key>` is the validation figure of the
checkpoint the trial selected (its best epoch; per epoch while it runs, for early stopping),
`test.<key>` the final evaluation report of that checkpoint, `train.<key>` the last epoch's
training average."""

from __future__ import annotations

import re
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from ascl.metric_names import Scope

METRIC_PATTERN = r"^(val|test|train)\.[a-z][a-z0-9_]{0,63}$"


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(pattern=METRIC_PATTERN, description="e.g. val.robust_acc, test.clean_acc, train.loss")
    mode: Literal["max", "min"] = "max"

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.mode == "max" else "minimize"


def final_value(metric: str, result: dict[str, Any] | None, history: list[dict[str, Any]]) -> float | None:
    """The figure of a finished trial (None when the job did not produce it)."""
    scope, key = split(metric)
    if scope == "test":
        return _number(((result or {}).get("test") or {}).get(key))
    if not history:
        return None
    if scope == "train":
        return _number(history[-1].get("train", {}).get(key))
    best_epoch = (result or {}).get("best_epoch")
    chosen = [h for h in history if h.get("epoch") == best_epoch] or [h for h in history if h.get("val")][-1:]
    return _number(chosen[0].get("val", {}).get(key)) if chosen else None


def epoch_value(metric: str, epoch: dict[str, Any]) -> float | None:
    """The figure one epoch reported (validation figures exist only on validated epochs)."""
    scope, key = split(metric)
    if scope == "test":
        return None
    return _number((epoch.get("val" if scope == "val" else "train") or {}).get(key))


def split(metric: str) -> tuple[Scope, str]:
    if re.fullmatch(METRIC_PATTERN, metric) is None:
        raise ValueError(f"not a sweep metric: {metric!r}")
    scope, _, key = metric.partition(".")
    return cast(Scope, scope), key


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
