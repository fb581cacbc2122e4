"""The sweep controller, one pass per dispatcher cycle over every active sweep: tell Optuna how
finished trials ended, report running trials' per-epoch figures and stop (prune) the hopeless ones,
create new trial jobs up to the sweep's concurrency and length, and end the sweep once nothing is
left to run, with its best trial (or Pareto front) and a summary in its MLflow parent run.

Every step is idempotent: an Optuna trial that was asked for but whose job was never written (a
crash in between) gets its job on the next pass, and trial jobs carry an idempotency key."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import Session, sessionmaker

from control.seams import Tracking
from control.sweep_report import summary_files
from service.api.sweep_schemas import SweepCreate
from service.db import session_scope
from service.db.models import Job, Sweep
from service.jobs import store
from service.jobs.status import JobStatus, is_terminal
from service.settings import ServiceSettings
from service.sweeps import objectives, records, study, trials
from service.sweeps.records import SweepStatus

logger = logging.getLogger(__name__)
PRUNED = "PRUNED"
RUN_STATUS = {SweepStatus.SUCCEEDED: "FINISHED", SweepStatus.FAILED: "FAILED"}  # else KILLED


class SweepController:
    def __init__(self, sessions: sessionmaker[Session], tracker: Tracking, settings: ServiceSettings) -> None:
        self.sessions = sessions
        self.tracker = tracker
        self.settings = settings
        self.storage = study.storage(settings.resolved_database_url)

    def cycle(self) -> None:
        with session_scope(self.sessions) as session:
            sweep_ids = [sweep.id for sweep in records.active(session)]
        for sweep_id in sweep_ids:
            try:
                self.advance(sweep_id)
            except Exception:  # one broken sweep must not stop the others
                logger.exception("sweep.advance_failed sweep_id=%s", sweep_id)

    def advance(self, sweep_id: str) -> None:
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            request = SweepCreate.model_validate(sweep.request)
        self._ensure_parent_run(sweep_id, request)
        loaded = study.retrying(
            study.study,
            self.storage,
            sweep.study_name,
            algorithm=request.algorithm,
            seed=request.seed,
            space=request.space,
            early_stopping=request.early_stopping,
        )
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            jobs = records.trials(session, sweep_id)
            by_number = {trial.number: trial for trial in loaded.get_trials(deepcopy=False)}
            self._tell_finished(loaded, request, jobs, by_number)
            if request.early_stopping is not None:
                self._prune(session, loaded, request, jobs, by_number)
            if sweep.status == SweepStatus.RUNNING:
                self._check_failures(session, sweep, loaded)
            if sweep.status == SweepStatus.RUNNING:
                self._top_up(session, sweep, loaded, request, jobs, by_number)
            sweep.best = best_of(loaded, request)
            done = records.active_trials(session, sweep_id) == 0 and (
                sweep.status == SweepStatus.STOPPING or len(loaded.get_trials(deepcopy=False)) >= sweep.max_trials
            )
            if done:
                self._end(sweep, loaded)
                ended = sweep.status
        if done:
            self._close_parent_run(sweep_id, request, ended)

    # Optuna bookkeeping ---------------------------------------------------------------------
    def _tell_finished(
        self, loaded: optuna.Study, request: SweepCreate, jobs: list[Job], by_number: dict[int, FrozenTrial]
    ) -> None:
        for job in jobs:
            trial = by_number.get(job.trial_number or -1)
            if trial is None or trial.state != TrialState.RUNNING or not is_terminal(job.status):
                continue
            history = job.metrics_history or []
            values = [objectives.final_value(o.metric, job.result, history) for o in request.objective]
            if job.status == JobStatus.SUCCEEDED and None not in values:
                study.retrying(loaded.tell, trial.number, values)
            elif job.error_class == PRUNED:
                study.retrying(loaded.tell, trial.number, state=TrialState.PRUNED)
            else:
                study.retrying(loaded.tell, trial.number, state=TrialState.FAIL)

    def _prune(
        self,
        session: Session,
        loaded: optuna.Study,
        request: SweepCreate,
        jobs: list[Job],
        by_number: dict[int, FrozenTrial],
    ) -> None:
        """Report each running trial's new epochs; stop it when the rule says it cannot catch up."""
        rule = request.early_stopping
        assert rule is not None
        for job in jobs:
            trial = by_number.get(job.trial_number or -1)
            if trial is None or trial.state != TrialState.RUNNING or job.status != JobStatus.RUNNING:
                continue
            handle = optuna.trial.Trial(loaded, trial._trial_id)
            reported = False
            for report in job.metrics_history or []:
                value = objectives.epoch_value(rule.metric, report)
                if value is not None and report["epoch"] not in trial.intermediate_values:
                    study.retrying(handle.report, value, step=report["epoch"])
                    reported = True
            if reported and study.retrying(handle.should_prune):
                last = (job.metrics_history or [{}])[-1].get("epoch")
                reason = f"pruned by the {rule.rule} rule at epoch {last} ({rule.metric})"
                store.cancel(session, job.id, actor="sweep", reason=reason)
                job.error_class, job.error_message = PRUNED, reason
                study.retrying(loaded.tell, trial.number, state=TrialState.PRUNED)
                logger.info("sweep.pruned job_id=%s trial=%d %s", job.id, trial.number, reason)

    def _check_failures(self, session: Session, sweep: Sweep, loaded: optuna.Study) -> None:
        failed = len(loaded.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        if failed < sweep.max_failed_trials:
            return
        sweep.status, sweep.outcome = SweepStatus.STOPPING.value, SweepStatus.FAILED.value
        sweep.reason = f"{failed} trials failed (max_failed_trials {sweep.max_failed_trials})"
        for job in records.trials(session, sweep.id):
            if job.status == JobStatus.QUEUED:
                store.cancel(session, job.id, actor="sweep", reason=f"sweep {sweep.id} stopped: {sweep.reason}")
        logger.warning("sweep.failed sweep_id=%s %s", sweep.id, sweep.reason)

    def _top_up(
        self,
        session: Session,
        sweep: Sweep,
        loaded: optuna.Study,
        request: SweepCreate,
        jobs: list[Job],
        by_number: dict[int, FrozenTrial],
    ) -> None:
        """Jobs for asked trials that have none (a crash after the ask), then new trials while the
        sweep is below its concurrency and its length."""
        with_job = {job.trial_number for job in jobs}
        for trial in by_number.values():
            if trial.state == TrialState.RUNNING and trial.number not in with_job:
                self._add_trial_job(session, sweep, trial.number, dict(trial.params))
        active = records.active_trials(session, sweep.id)
        created = len(by_number)
        while created < sweep.max_trials and active < sweep.max_concurrency:
            asked = study.retrying(
                study.ask, loaded, algorithm=request.algorithm, seed=request.seed, space=request.space
            )
            self._add_trial_job(session, sweep, asked.number, dict(asked.params))
            created, active = created + 1, active + 1

    def _add_trial_job(self, session: Session, sweep: Sweep, number: int, params: dict[str, Any]) -> None:
        new = trials.trial_job(sweep.base_spec, sweep_id=sweep.id, sweep_name=sweep.name, number=number, params=params)
        store.add_job(session, new, idempotency_key=f"sweep-{sweep.id}-t{number}", body_hash=sweep.id)
        session.flush()
        logger.info("sweep.trial sweep_id=%s trial=%d params=%s", sweep.id, number, params)

    def _end(self, sweep: Sweep, loaded: optuna.Study) -> None:
        complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if sweep.status == SweepStatus.STOPPING:
            sweep.status = sweep.outcome or SweepStatus.CANCELLED.value
        elif complete:
            sweep.status, sweep.reason = SweepStatus.SUCCEEDED.value, f"{len(complete)} trials completed"
        else:
            sweep.status, sweep.reason = SweepStatus.FAILED.value, "no trial completed"
        sweep.outcome, sweep.finished_at = None, store.now()
        logger.info("sweep.ended sweep_id=%s status=%s", sweep.id, sweep.status)

    # MLflow ------------------------------------------------------------------------------------
    def _ensure_parent_run(self, sweep_id: str, request: SweepCreate) -> None:
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            if sweep.mlflow_run_id is not None:
                return
            name, owner = sweep.name, sweep.owner
        params = {
            f"space.{key}": dimension.model_dump_json(exclude_defaults=True) for key, dimension in request.space.items()
        }
        params |= {"algorithm": request.algorithm, "seed": str(request.seed), "max_trials": str(request.max_trials)}
        params |= {"objective": ", ".join(f"{o.mode} {o.metric}" for o in request.objective)}
        experiment_id, run_id = self.tracker.ensure_sweep_run(
            experiment=request.base.mlflow_experiment,
            sweep_id=sweep_id,
            run_name=name,
            tags={"owner": owner},
            params=params,
        )
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            sweep.mlflow_experiment_id, sweep.mlflow_run_id = experiment_id, run_id

    def _close_parent_run(self, sweep_id: str, request: SweepCreate, status: str) -> None:
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            run_id, best = sweep.mlflow_run_id, sweep.best
            rows = [
                {
                    "trial": job.trial_number,
                    "job_id": job.id,
                    "status": job.status,
                    **trials.params_of(job.spec, list(request.space)),
                    **{
                        o.metric: objectives.final_value(o.metric, job.result, job.metrics_history or [])
                        for o in request.objective
                    },
                }
                for job in records.trials(session, sweep_id)
            ]
        if run_id is None:
            return
        metrics = {
            f"best_{o.metric.replace('.', '_')}": v for o, v in zip(request.objective, _best_values(best), strict=False)
        }
        self.tracker.finish_sweep_run(
            run_id,
            status="FINISHED"
            if status == SweepStatus.SUCCEEDED
            else "FAILED"
            if status == SweepStatus.FAILED
            else "KILLED",
            metrics={k: v for k, v in metrics.items() if v is not None},
            files=summary_files(rows, request),
        )


def best_of(loaded: optuna.Study, request: SweepCreate) -> dict[str, Any] | None:
    """The best completed trial (one objective) or the Pareto front (two)."""
    complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None

    def described(trial: FrozenTrial) -> dict[str, Any]:
        return {"trial": trial.number, "values": list(trial.values), "params": dict(trial.params)}

    if len(request.objective) == 1:
        return {"best_trial": described(loaded.best_trial)}
    return {"pareto_front": [described(trial) for trial in loaded.best_trials]}


def _best_values(best: dict[str, Any] | None) -> list[float | None]:
    if best is None or "best_trial" not in best:
        return []
    return [float(v) for v in best["best_trial"]["values"]]
