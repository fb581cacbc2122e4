"""MLflow from the control plane: one experiment per name, one run per job (every attempt of the
job logs into it, so a resumed run continues its curves), terminal statuses repaired, and models
registered here — never by a worker — so registration happens once, after the job succeeded."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import RunStatus, ViewType
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from ascl.run_files import CONFIG
from control.version_counts import VersionCounts
from service.contracts import MODEL_NAME_PATTERN, ModelRef
from service.jobs.errors import InvalidSpec
from service.registry import ModelSummary, RegisteredVersion, VersionRecord

logger = logging.getLogger(__name__)

JOB_TAG = "ascl.job_id"
SWEEP_TAG = "ascl.sweep_id"
VERSION_PAGE = 1_000


class Tracker:
    def __init__(self, tracking_uri: str, *, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root  # only for local stores; a tracking server decides its own
        self.client = MlflowClient(tracking_uri)
        self._counts = VersionCounts()
        mlflow.set_tracking_uri(tracking_uri)  # mlflow.register_model resolves logged-model URIs globally

    def ready(self) -> bool:
        try:
            self.client.search_experiments(max_results=1)
            return True
        except Exception:  # readiness reports, it does not raise
            return False

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = f"{self.artifact_root}/{name}" if self.artifact_root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # created concurrently: read it back
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def ensure_run(self, *, experiment: str, job_id: str, run_name: str, tags: dict[str, str]) -> tuple[str, str]:
        """The job's run, created once: a crash after creation finds it again by its job tag."""
        experiment_id = self.experiment_id(experiment)
        existing = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{job_id}'", run_view_type=ViewType.ALL, max_results=1
        )
        if existing:
            return experiment_id, existing[0].info.run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags={JOB_TAG: job_id, **tags})
        self.client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.SCHEDULED))
        return experiment_id, run.info.run_id

    def ensure_sweep_run(
        self, *, experiment: str, sweep_id: str, run_name: str, tags: dict[str, str], params: dict[str, str]
    ) -> tuple[str, str]:
        """A sweep's parent run (its trials' runs are its children), created once."""
        experiment_id = self.experiment_id(experiment)
        existing = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}'",  # a hex id: nothing to escape
            run_view_type=ViewType.ALL,
            max_results=1,
        )
        if existing:
            return experiment_id, existing[0].info.run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags={SWEEP_TAG: sweep_id, **tags})
        for key, value in params.items():
            self.client.log_param(run.info.run_id, key[:250], value[:6000])
        return experiment_id, run.info.run_id

    def finish_sweep_run(self, run_id: str, *, status: str, metrics: dict[str, float], files: dict[str, bytes]) -> None:
        """The sweep's best values and summary files, then the run closed."""
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, value)
        with tempfile.TemporaryDirectory() as staging:
            for name, content in files.items():
                (Path(staging) / name).write_bytes(content)
                self.client.log_artifact(run_id, str(Path(staging) / name), artifact_path="summary")
        self.finish_run(run_id, status)

    def finish_run(self, run_id: str, status: str) -> None:
        """Close the run with FINISHED, FAILED or KILLED unless it is already closed that way."""
        run = self.client.get_run(run_id)
        if run.info.status != status:
            self.client.set_terminated(run_id, status=status)

    def open_runs(self) -> list[tuple[str, str]]:
        """(run id, job id) of this service's runs that MLflow still shows as RUNNING."""
        experiment_ids = [e.experiment_id for e in self.client.search_experiments()]
        if not experiment_ids:
            return []
        runs = self.client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=1000)
        return [(run.info.run_id, run.data.tags[JOB_TAG]) for run in runs if JOB_TAG in run.data.tags]

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def resolve(self, ref: ModelRef) -> RegisteredVersion:
        """The version a models:/ reference names now, with the config its run was trained with."""
        try:
            if ref.version is not None:
                version = self.client.get_model_version(ref.name, ref.version)
            else:
                version = self.client.get_model_version_by_alias(ref.name, str(ref.alias))
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST" and "not found" not in str(error).lower():
                raise
            raise InvalidSpec("model", f"{ref.uri} is not in the model registry ({_first_line(error)})") from None
        try:
            config: dict[str, Any] = json.loads(mlflow.artifacts.load_text(f"runs:/{version.run_id}/{CONFIG}"))
        except (MlflowException, OSError, json.JSONDecodeError) as error:
            raise InvalidSpec(
                "model",
                f"{ref.uri} has no readable {CONFIG} in its run {version.run_id}: was it trained by this service?",
            ) from error
        return RegisteredVersion(name=ref.name, version=str(version.version), run_id=str(version.run_id), config=config)

    def register(self, *, model_uri: str, name: str, job_id: str, tags: dict[str, str]) -> str:
        """Register once per job: an existing version tagged with this job is returned instead. Names
        are validated (letters, digits, '.', '_', '-') before they reach the registry's filter."""
        if re.fullmatch(MODEL_NAME_PATTERN, name) is None:
            raise ValueError(f"model name {name[:200]!r} is not allowed (letters, digits, '.', '_', '-')")
        try:
            self.client.get_registered_model(name)
        except Exception:
            self.client.create_registered_model(name, tags={"created_by": "ascl-service"})
        # one filtered search, not every version read: a sweep's model can have thousands
        this_job = f"name = {filter_literal(name)} AND tags.`{JOB_TAG}` = {filter_literal(job_id)}"
        for version in self.client.search_model_versions(this_job, max_results=1):
            return str(version.version)
        version = mlflow.register_model(model_uri, name, tags={JOB_TAG: job_id, **tags})
        logger.info("mlflow.registered name=%s version=%s job_id=%s", name, version.version, job_id)
        return str(version.version)

    def _all_versions(self, name: str) -> list[ModelVersion]:
        """Every version, page by page: one search returns at most a page (the newest first), and a
        champion beyond it was taken for none."""
        found: list[ModelVersion] = []
        token = None
        while True:
            page = self.client.search_model_versions(
                f"name = {filter_literal(name)}", max_results=VERSION_PAGE, page_token=token
            )
            found += page
            token = page.token
            if not token:
                return found

    def versions(self, name: str) -> list[VersionRecord]:
        model = self._registered(name)
        if model is None:
            return []
        held = _aliases_by_version(model)
        return sorted((_record(v, held) for v in self._all_versions(name)), key=lambda record: int(record.version))

    def summary(self, name: str, champion_alias: str) -> ModelSummary:
        model = self._registered(name)
        if model is None:
            return ModelSummary(versions=0, latest_version=None, champion=None)
        newest = self.client.search_model_versions(
            f"name = {filter_literal(name)}", max_results=1, order_by=["version_number DESC"]
        )
        latest = str(newest[0].version) if newest else None
        state = (model.last_updated_timestamp, latest)
        count = self._counts.get(name, state, lambda: len(self._all_versions(name))) if latest else 0
        champion = (model.aliases or {}).get(champion_alias)
        return ModelSummary(
            versions=count,
            latest_version=latest,
            champion=None
            if champion is None
            else _record(self.client.get_model_version(name, str(champion)), _aliases_by_version(model)),
        )

    def _registered(self, name: str) -> RegisteredModel | None:
        try:
            return self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)
        logger.info("mlflow.alias_moved name=%s alias=%s version=%s", name, alias, version)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Set the tags (again): idempotent, so a retried success just writes the same values."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)


def _aliases_by_version(model: RegisteredModel) -> dict[str, list[str]]:
    """A version read from a search has no aliases: the registered model has them."""
    held: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        held.setdefault(str(version), []).append(str(alias))
    return held


def _record(version: ModelVersion, held: dict[str, list[str]]) -> VersionRecord:
    return VersionRecord(
        name=str(version.name),
        version=str(version.version),
        run_id=str(version.run_id or ""),
        created_at=datetime.fromtimestamp((version.creation_timestamp or 0) / 1000, tz=UTC),
        aliases=sorted(held.get(str(version.version), [])),
        tags=dict(version.tags or {}),
    )


def filter_literal(value: str) -> str:
    """`value` as a string literal of an MLflow filter: quoted with the quote it does not contain;
    a value with both quotes, a backslash or a control character is refused (MLflow has no escape)."""
    if re.search(r"[\\\x00-\x1f\x7f]", value) or ("'" in value and '"' in value):
        raise ValueError(f"{value[:200]!r} cannot be used in a registry filter")
    return f'"{value}"' if "'" in value else f"'{value}'"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
