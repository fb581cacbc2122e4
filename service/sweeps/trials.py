"""A sweep's trials as jobs: one template (the base job-creation body, validated and resolved once,
at the sweep's creation) and, per trial, its parameters applied as overrides."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ascl.config import ExperimentConfig
from ascl.errors import ConfigError
from service.jobs.data_root import with_data_dir_resolved
from service.jobs.errors import InvalidSpec
from service.jobs.store import NewJob, clipped

# what trial_job raises when a trial's parameters make no job: no config together, or no data directory
UNMAKEABLE = (ConfigError, InvalidSpec)


def template(new: NewJob, *, explicit_model_name: str | None) -> dict[str, Any]:
    """What every trial copies. Trials register a model only under a name the base asked for."""
    return asdict(replace(new, model_name=explicit_model_name))


def trial_job(
    template: dict[str, Any],
    *,
    sweep_id: str,
    sweep_name: str,
    number: int,
    params: dict[str, Any],
    data_root: Path | None,
) -> NewJob:
    """The trial's job: its data directory resolved as a job's is (the space was checked at submission)."""
    base = NewJob(**template)
    config = ExperimentConfig.from_dict(base.spec).with_overrides(params)
    spec = with_data_dir_resolved(config, data_root).to_dict()
    return replace(
        base,
        name=clipped(sweep_name, suffix=f" #{number}"),
        spec=spec,
        tags=[*base.tags, f"sweep-{sweep_id[:12]}"][:50],
        sweep_id=sweep_id,
        trial_number=number,
    )


def params_of(spec: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """A trial's parameters, read back from its spec by their dotted keys."""
    found: dict[str, Any] = {}
    for key in keys:
        node: Any = spec
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        found[key] = node
    return found
