"""A registered model as the model endpoints show it: its versions from the registry, their
figures from their tags, their evaluation state from the database, in the order asked for."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.model_schemas import AliasMove, Evaluation, Robustness, SortKey, ThreatModel, VersionView
from service.db.models import AliasMove as AliasMoveRow
from service.db.models import Job, ModelOwner
from service.jobs.status import TERMINAL, JobStatus
from service.models.figures import Figures
from service.registry import VersionRecord

JOB_TAG = "ascl.job_id"  # set on each version by the control plane when it registers it
CHAMPION = "champion"


def robustness_of(figures: Figures) -> Robustness:
    return Robustness(
        threat_model=ThreatModel(norm="l2" if figures.norm == "l2" else "linf", epsilon=figures.epsilon),
        clean_acc=figures.clean_acc,
        pgd_acc=figures.pgd_acc,
        pgd_steps=figures.pgd_steps,
        autoattack_acc=figures.autoattack_acc,
        autoattack_version=figures.autoattack_version,
        examples=figures.examples,
        eval_job_id=figures.eval_job_id,
        eval_run_id=figures.eval_run_id,
    )


def evaluation_state(figures: Figures | None, job: Job | None) -> Evaluation:
    if figures is not None:
        return "evaluated"
    if job is None:
        return "none"
    if JobStatus(job.status) in TERMINAL and job.status != JobStatus.SUCCEEDED:
        return "failed"
    return "pending"


def version_view(record: VersionRecord, *, owner: ModelOwner, job: Job | None, ui: str | None) -> VersionView:
    figures = Figures.from_tags(record.tags)
    url = f"{ui}/#/models/{quote(record.name, safe='')}/versions/{record.version}" if ui else None
    return VersionView(
        name=record.name,
        version=record.version,
        run_id=record.run_id,
        job_id=record.tags.get(JOB_TAG),
        owner=owner.owner,
        created_at=record.created_at,
        aliases=record.aliases,
        evaluation=evaluation_state(figures, job),
        robustness=None if figures is None else robustness_of(figures),
        mlflow_url=url,
    )


def sort_versions(views: list[VersionView], key: SortKey, *, descending: bool) -> list[VersionView]:
    """Versions without the figure sorted on go last, whatever the order."""

    def value(view: VersionView) -> float | None:
        if key == "version":
            return float(view.version)
        if key == "created_at":
            return view.created_at.timestamp()
        figure = None if view.robustness is None else getattr(view.robustness, key)
        return None if figure is None else float(figure)

    known = [view for view in views if value(view) is not None]
    unknown = [view for view in views if value(view) is None]
    return sorted(known, key=lambda view: float(value(view) or 0.0), reverse=descending) + unknown


def alias_moves(session: Session, name: str) -> list[AliasMove]:
    rows = session.execute(
        select(AliasMoveRow).where(AliasMoveRow.model_name == name).order_by(AliasMoveRow.id.desc())
    ).scalars()
    return [move_view(row) for row in rows]


def move_view(row: AliasMoveRow) -> AliasMove:
    return AliasMove(
        alias=row.alias,
        version=row.version,
        previous_version=row.previous_version,
        actor=row.actor,
        at=row.at,
        figures=row.figures,
    )
