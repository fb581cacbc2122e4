"""The operator's upper bounds on what a job may cost (epochs, batch sizes, attack steps, evaluation
sizes, synthetic sizes, feature dims...): tighter than the library's own bounds, set per service by
`ASCL_SPEC_LIMITS` (a JSON object of dotted config fields and their maxima). Checked at submission,
for every sweep dimension's extremes too, and answered with a 422 naming the field and the limit."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from ascl.config import ExperimentConfig
from ascl.config_fields import field_rules
from service.jobs.errors import InvalidSpec

# What a service on a shared cluster allows unless its operator says otherwise: enough for every
# paper preset, far below the library's bounds (which only keep numbers sane).
DEFAULT_SPEC_LIMITS: dict[str, float] = {
    "train.epochs": 1000,
    "train.batch_size": 8192,
    "attack.steps": 1000,
    "attack.restarts": 20,
    "eval.pgd_steps": 10_000,
    "eval.pgd_restarts": 20,
    "eval.val_steps": 1000,
    "eval.sweep_steps": 1000,
    "eval.autoattack_examples": 100_000,
    "eval.batch_size": 8192,
    "data.synthetic_size": 1_000_000,
    "model.feat_dim": 8192,
}


@functools.cache  # the config's fields are fixed: read once, not per submission
def numeric_fields() -> frozenset[str]:
    """Every dotted field of the experiment config that holds a number (or numbers)."""
    fields: set[str] = set()
    for rule in field_rules(ExperimentConfig):
        if isinstance(rule.hint, type) and dataclasses.is_dataclass(rule.hint):  # a section
            fields.update(f"{rule.name}.{inner.name}" for inner in field_rules(rule.hint) if _numeric(inner.hint))
        elif _numeric(rule.hint):
            fields.add(rule.name)
    return frozenset(fields)


def _numeric(hint: Any) -> bool:
    candidates = (hint, *get_args(hint))
    return any(candidate in (int, float) for candidate in candidates) or any(
        _numeric(arg) for arg in get_args(hint) if arg is not type(None) and get_args(arg)
    )


@dataclass(frozen=True, slots=True)
class SpecLimits:
    maxima: Mapping[str, float]

    @classmethod
    def of(cls, configured: Mapping[str, float]) -> SpecLimits:
        """The defaults with the operator's entries over them; an unknown field or a non-finite or
        negative maximum is a start-up error, not a limit that silently never applies."""
        known = numeric_fields()
        for path, maximum in configured.items():
            if path not in known:
                raise ValueError(f"ASCL_SPEC_LIMITS: {path!r} is not a numeric experiment field")
            if not math.isfinite(maximum) or maximum < 0:
                raise ValueError(f"ASCL_SPEC_LIMITS: {path} must be a finite number >= 0 (got {maximum})")
        return cls({**DEFAULT_SPEC_LIMITS, **configured})

    def check(self, config: ExperimentConfig, *, field_of: Callable[[str], str] = str) -> None:
        """Raises InvalidSpec naming the first field above its limit, as `field_of` names the config
        path in the request (an override, the experiment body...)."""
        for path, maximum in self.maxima.items():
            value: Any = config
            for name in path.split("."):
                value = getattr(value, name, None)
            values = value if isinstance(value, tuple) else (value,)
            largest = max((v for v in values if isinstance(v, int | float)), default=None)
            if largest is not None and largest > maximum:
                raise InvalidSpec(field_of(path), f"{path} = {largest:g} is above this service's limit of {maximum:g}")
