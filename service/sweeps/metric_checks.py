"""At submission: a sweep's objective and early-stopping metric name figures every trial will report,
so that a sweep is refused at once instead of failing trial after trial. Which figures a trial reports
depends on a few fields of its config (ascl.metric_names.DEPENDS_ON): every combination of the values
the space searches for those fields is checked, the base's value where the space does not search one.
Not re-checked when a stored request is read back."""

from __future__ import annotations

import itertools
from typing import Any

from ascl.config import ExperimentConfig
from ascl.errors import ConfigError
from ascl.metric_names import DEPENDS_ON, Better, better, reported
from service.jobs.errors import InvalidSpec
from service.sweeps.objectives import Objective, split
from service.sweeps.space import Space


def check_reported(metric: str, field: str, space: Space, base: ExperimentConfig) -> None:
    """The error names `field`, and the settings of a trial that would not report `metric`."""
    scope, key = split(metric)
    for settings, config in _trial_variants(space, base):
        names = reported(config)[scope]
        if key not in names:
            where = f" with {_described(settings)}" if settings else ""
            raise InvalidSpec(field, f"trials{where} report no {metric}; their {scope} figures: {', '.join(names)}")


def check_pruning(metric: str, objective: Objective, space: Space, base: ExperimentConfig) -> None:
    """A per-epoch figure every trial reports, that improves the way the objective does: the
    pruning rules compare trials in the objective's direction."""
    field = "early_stopping.metric"
    scope, key = split(metric)
    if scope == "test":
        raise InvalidSpec(field, f"{metric} is reported once, at the end; per epoch: val.* and train.*")
    check_reported(metric, field, space, base)
    wanted: Better = "higher" if objective.mode == "max" else "lower"
    if metric != objective.metric and better(key) != wanted:
        way = f"better {better(key)}" if better(key) else "neither better higher nor lower"
        raise InvalidSpec(
            field,
            f"pruning compares trials the way the objective goes ({objective.mode} {objective.metric}) and "
            f"{metric} is {way}: prune on the objective or on a figure that improves the same way",
        )


def _trial_variants(space: Space, base: ExperimentConfig) -> list[tuple[dict[str, Any], ExperimentConfig]]:
    """(the searched settings, the config) for each combination that can change what a trial
    reports: one value of each kind the dependency reads (a range's ends are its extremes, and what
    is read of a number is whether it is above 0), at most 5 x 2 x 2 x 2."""
    searched: dict[str, list[Any]] = {}
    for field, reads in DEPENDS_ON.items():
        if field in space:
            kinds: dict[object, Any] = {}
            for value in space[field].samples():
                kinds.setdefault(reads(value), value)
            searched[field] = list(kinds.values())
    variants = []
    for values in itertools.product(*searched.values()):
        settings = dict(zip(searched, values, strict=True))
        try:
            variants.append((settings, base.with_overrides(settings)))
        except ConfigError:  # a combination no trial can have: other checks' business
            continue
    return variants


def _described(settings: dict[str, Any]) -> str:
    return ", ".join(f"{field}={value}" for field, value in settings.items())
