"""What the API needs to know about the model registry at submission, as a protocol: an eval job's
model is resolved to one concrete version and its training config before the job is accepted, so a
missing model is a 422 at once and the stored spec is exactly what runs. The MLflow implementation
lives in the control plane (`control/tracking.py`); the API process never imports MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.contracts import ModelRef
from service.jobs.errors import InvalidSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    config: dict[str, Any]  # the ExperimentConfig the model was trained with (its run's config.json)


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRecord:
    """One registered version as the model pages show it (its figures live in `tags`)."""

    name: str
    version: str
    run_id: str
    created_at: datetime
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSummary:
    """A model as the model list shows it."""

    versions: int
    latest_version: str | None
    champion: VersionRecord | None


class ModelRegistry(Protocol):
    def resolve(self, ref: ModelRef) -> RegisteredVersion:
        """The version `ref` names now; raises InvalidSpec('model', ...) when it cannot be used."""

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version of `name` (a name matching MODEL_NAME_PATTERN), oldest first; [] if none."""

    def summary(self, name: str, champion_alias: str) -> ModelSummary:
        """How many versions `name` has, its latest, and the version `champion_alias` names (if any),
        without reading every version each time: the model list asks this of every model."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` of `name` at `version`."""


class NoRegistry:
    """For an API without a registry connection: models:/ references are refused with the reason."""

    def resolve(self, ref: ModelRef) -> RegisteredVersion:
        raise InvalidSpec("model", f"this API has no model registry configured, so {ref.uri} cannot be resolved")

    def versions(self, name: str) -> list[VersionRecord]:  # noqa: ARG002 (no registry: no versions)
        return []

    def summary(self, name: str, champion_alias: str) -> ModelSummary:  # noqa: ARG002 (no registry: no versions)
        return ModelSummary(versions=0, latest_version=None, champion=None)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise InvalidSpec(
            "version", f"this API has no model registry configured: @{alias} of {name} cannot move to {version}"
        )
