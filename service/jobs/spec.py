"""The only place a job request becomes an ascl ExperimentConfig (the worker uses it too)."""

from __future__ import annotations

from typing import Any

from ascl.config import ExperimentConfig
from ascl.errors import ConfigError
from ascl.presets import get_preset
from service.jobs.errors import InvalidSpec


def resolve_experiment(
    *, preset: str | None, experiment: dict[str, Any] | None, overrides: dict[str, Any]
) -> ExperimentConfig:
    """A preset or a full spec, then dotted overrides. Errors name the request field."""
    if (preset is None) == (experiment is None):
        raise InvalidSpec("preset", "give exactly one of 'preset' and 'experiment'")
    if experiment is not None:
        try:  # checked with its overrides as one config: a spec may hold only with them
            return ExperimentConfig.from_spec(experiment, overrides)
        except ConfigError as error:
            given = "overrides" if _overridden(error.field, overrides) else "experiment"
            raise InvalidSpec(f"{given}.{error.field}", error.problem) from None
    try:
        base = get_preset(preset or "")
    except ConfigError as error:
        raise InvalidSpec("preset", error.problem) from None
    return apply_overrides(base, overrides)


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A whole config (a preset, a stored spec) with dotted overrides; errors name `overrides.<field>`."""
    try:
        return config.with_overrides(overrides)
    except ConfigError as error:
        raise InvalidSpec(f"overrides.{error.field}", error.problem) from None


def _overridden(field: str, overrides: dict[str, Any]) -> bool:
    """Whether an error at `field` is about an override: the field itself, within it or above it."""
    return any(path == field or path.startswith(f"{field}.") or field.startswith(f"{path}.") for path in overrides)


def parse_stored(spec: dict[str, Any]) -> ExperimentConfig:
    """A stored spec back into a config (the worker side); unknown spec versions are refused."""
    try:
        return ExperimentConfig.from_dict(spec)
    except ConfigError as error:
        raise InvalidSpec(f"spec.{error.field}", error.problem) from None
