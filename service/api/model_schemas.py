"""Response and request bodies of the model endpoints (`/api/v1/models...`): registered model versions
with their robustness figures, side by side, and alias promotion with its rules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import Text, Timestamp

Evaluation = Literal["evaluated", "pending", "failed", "none"]  # the version's standard robustness evaluation


class ThreatModel(BaseModel):
    norm: Literal["linf", "l2"]
    epsilon: float = Field(description="on the [0, 1] pixel scale, e.g. 8/255 = 0.0314")


class Robustness(BaseModel):
    """One standard evaluation of one version (also its MLflow version tags)."""

    threat_model: ThreatModel
    clean_acc: float
    pgd_acc: float
    pgd_steps: int
    autoattack_acc: float | None = Field(description="null when the evaluation ran no AutoAttack")
    autoattack_version: str | None
    examples: int = Field(description="test examples every figure was measured on")
    eval_job_id: str | None
    eval_run_id: str | None


class VersionView(BaseModel):
    name: str
    version: str
    run_id: str
    job_id: str | None = Field(description="the training job that registered it")
    owner: str
    created_at: Timestamp
    aliases: list[str]
    evaluation: Evaluation
    robustness: Robustness | None
    mlflow_url: str | None = Field(description="the version's page in the MLflow UI")


class ModelView(BaseModel):
    name: str
    owner: str
    group: str | None
    versions: int
    latest_version: str | None
    champion: VersionView | None


class ModelList(BaseModel):
    models: list[ModelView]


SortKey = Literal["version", "clean_acc", "pgd_acc", "autoattack_acc", "created_at"]


class ModelDetail(BaseModel):
    name: str
    owner: str
    group: str | None
    versions: list[VersionView] = Field(description="sorted as asked (`sort`, `order`), the first `limit`")
    total_versions: int = Field(description="all versions of the model, shown or not")
    alias_moves: list[AliasMove] = Field(description="every alias move under this name, newest first")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"version": "3", "alias": "champion", "max_clean_drop": 0.01}]}
    )

    version: Text = Field(description="the version to become @alias")
    alias: Literal["champion"] = "champion"
    max_clean_drop: float = Field(
        0.01, ge=0.0, le=1.0, description="largest clean-accuracy drop against the current holder (absolute)"
    )


class AliasMove(BaseModel):
    alias: str
    version: str
    previous_version: str | None
    actor: str
    at: Timestamp
    figures: dict[str, float] = Field(description="the figures the decision compared")


class PromoteResult(BaseModel):
    promoted: bool
    reason: str = Field(description="why it moved, or why it was refused")
    move: AliasMove | None


ModelDetail.model_rebuild()
