"""The sweep controller, one pass per dispatcher cycle over every active sweep: tell Optuna how
finished trials ended, report running trials' per-epoch figures and stop (prune) the hopeless ones,
create new trial jobs (a few a pass) up to the sweep's concurrency and length and within its owner's
queued-job limit, and end the sweep once nothing is
left to run, with its best trial (or Pareto front) and a summary in its MLflow parent run.

A pass reads (no lock), then talks to Optuna, then writes: Optuna's storage is the same database,
and on SQLite it waits for the write lock, so it is never called inside our own write transaction.
Every step is idempotent: a trial that was asked for but whose job was never written (a crash in
between) gets its job on the next pass, and trial jobs carry an idempotency key."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from control.seams import Tracking
from control.sweep_report import summary_files
from service.api.sweep_schemas import SweepCreate
from service.db import read_scope, session_scope
from service.db.models import Job, Sweep
from service.jobs import queueing, store
from service.jobs.status import JobStatus, is_terminal
from service.settings import ServiceSettings
from service.sweeps import objectives, records, study, trials
from service.sweeps.records import ENDED, PRUNED, SweepStatus

logger = logging.getLogger(__name__)
# One pass's share of the dispatcher's cycle, which also claims everyone's jobs: a sweep asks Optuna
# for at most this many trials a pass (an ask and its job cost ~0.15 s on SQLite), and the pass stops
# taking further sweeps after this long; the next pass starts with the sweeps it did not reach.
TRIALS_PER_PASS = 4
PASS_BUDGET_S = 1.0


@dataclass(frozen=True, slots=True)
class _Trial:
    """A trial job as read at the start of a pass."""

    job_id: str
    number: int
    status: str
    error_class: str | None
    result: dict[str, Any] | None
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, job: Job) -> _Trial:
        return cls(job.id, job.trial_number or 0, job.status, job.error_class, job.result, job.metrics_history or [])


class SweepController:
    def __init__(self, sessions: sessionmaker[Session], tracker: Tracking, settings: ServiceSettings) -> None:
        self.sessions = sessions
        self.tracker = tracker
        self.settings = settings
        self.storage = study.storage(settings.resolved_database_url)
        self._reached = ""  # the last sweep a pass advanced
        self._awaiting_upgrade: set[str] = set()  # sweeps with a field this version does not know, warned of once

    def cycle(self) -> None:
        with read_scope(self.sessions) as session:
            sweep_ids = sorted(sweep.id for sweep in records.active(session))
        # those after the last one reached first, so that every sweep is reached in turn
        waiting = [i for i in sweep_ids if i > self._reached] + [i for i in sweep_ids if i <= self._reached]
        started = time.monotonic()
        for sweep_id in waiting:
            self._reached = sweep_id
            try:
                self.advance(sweep_id)
            except Exception:  # one broken sweep must not stop the others
                logger.exception("sweep.advance_failed sweep_id=%s", sweep_id)
            if time.monotonic() - started > PASS_BUDGET_S:  # at least one sweep a pass
                break

    def advance(self, sweep_id: str) -> None:
        with read_scope(self.sessions) as session:
            stored = records.get(session, sweep_id).request
        try:
            request = SweepCreate.model_validate(stored)
        except ValidationError as error:  # stored by a version with other rules
            self._end_unreadable(sweep_id, error)
            return
        with read_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            if SweepStatus(sweep.status) in ENDED:  # ended in a pass that died before its summary
                self._close_parent_run(sweep_id, request, sweep.status)
                return
            running, limits = sweep.status == SweepStatus.RUNNING, (sweep.max_trials, sweep.max_concurrency)
            budget, study_name = sweep.max_failed_trials, sweep.study_name
            template, name = sweep.base_spec, sweep.name
            seen = [_Trial.of(job) for job in records.trials(session, sweep_id)]
            # its trials are the owner's queued jobs, within the same limit as any other
            room = self.settings.max_queued_per_user - queueing.queued_count(session, sweep.owner)
        self._ensure_parent_run(sweep_id, request)
        loaded = study.retrying(study.study, self.storage, study_name, early_stopping=request.early_stopping)
        by_number = {trial.number: trial for trial in loaded.get_trials(deepcopy=False)}
        self._tell_finished(loaded, request, seen, by_number)
        pruned = self._prune(loaded, request, seen, by_number) if request.early_stopping else {}
        failed = len(loaded.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        if running and failed < budget:
            self._ask(loaded, request, seen, pruned, limits, min(room, TRIALS_PER_PASS))
        impossible = self._fail_impossible(loaded, sweep_id, name, template, {t.number for t in seen})
        failed = len(loaded.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        best = best_of(loaded, request)
        asked = {trial.number: dict(trial.params) for trial in loaded.get_trials(deepcopy=False)}
        open_trials = {t.number for t in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        completed = len(loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            for job_id, reason in pruned.items():
                store.cancel(session, job_id, actor="sweep", reason=reason)
                job = store.get_job(session, job_id)
                job.error_class, job.error_message = PRUNED, reason
            if sweep.status == SweepStatus.RUNNING and failed >= sweep.max_failed_trials:
                self._stop_for_failures(session, sweep, failed, impossible)
            if sweep.status == SweepStatus.RUNNING:
                with_job = {job.trial_number for job in records.trials(session, sweep_id)}
                for number in sorted(open_trials - with_job):  # new, or asked before a crash
                    self._add_trial_job(session, sweep, number, asked[number])
            sweep.best = best
            session.flush()
            done = records.active_trials(session, sweep_id) == 0 and (
                sweep.status == SweepStatus.STOPPING or len(asked) >= sweep.max_trials
            )
            if done:
                self._end(sweep, completed)
                ended = sweep.status
        if done:  # after the commit: an MLflow failure here is retried by the next pass
            self._close_parent_run(sweep_id, request, ended)

    # Optuna ------------------------------------------------------------------------------------
    def _tell_finished(
        self, loaded: optuna.Study, request: SweepCreate, seen: list[_Trial], by_number: dict[int, FrozenTrial]
    ) -> None:
        for trial in seen:
            frozen = by_number.get(trial.number)
            if frozen is None or frozen.state != TrialState.RUNNING or not is_terminal(trial.status):
                continue
            values = [objectives.final_value(o.metric, trial.result, trial.history) for o in request.objective]
            if request.early_stopping is not None:  # its whole curve, which later trials are compared with
                self._report(loaded, frozen, trial, request.early_stopping.metric)
            if trial.status == JobStatus.SUCCEEDED and None not in values:
                study.retrying(loaded.tell, trial.number, values)
            elif trial.error_class == PRUNED:
                study.retrying(loaded.tell, trial.number, state=TrialState.PRUNED)
            else:
                study.retrying(loaded.tell, trial.number, state=TrialState.FAIL)

    def _prune(
        self, loaded: optuna.Study, request: SweepCreate, seen: list[_Trial], by_number: dict[int, FrozenTrial]
    ) -> dict[str, str]:
        """Report each running trial's new epochs; {job id: reason} of those the rule stops."""
        rule = request.early_stopping
        assert rule is not None
        stopped: dict[str, str] = {}
        for trial in seen:
            frozen = by_number.get(trial.number)
            if frozen is None or frozen.state != TrialState.RUNNING or trial.status != JobStatus.RUNNING:
                continue
            handle = self._report(loaded, frozen, trial, rule.metric)
            if handle is not None and study.retrying(handle.should_prune):
                last = trial.history[-1].get("epoch")
                stopped[trial.job_id] = f"pruned by the {rule.rule} rule at epoch {last} ({rule.metric})"
                study.retrying(loaded.tell, trial.number, state=TrialState.PRUNED)
                logger.info("sweep.pruned job_id=%s trial=%d", trial.job_id, trial.number)
        return stopped

    @staticmethod
    def _report(loaded: optuna.Study, frozen: FrozenTrial, trial: _Trial, metric: str) -> optuna.trial.Trial | None:
        """Report the epochs Optuna has not seen; the trial's handle, or None when nothing was new."""
        handle = optuna.trial.Trial(loaded, frozen._trial_id)
        reported = False
        for report in trial.history:
            value = objectives.epoch_value(metric, report)
            if value is not None and report["epoch"] not in frozen.intermediate_values:
                study.retrying(handle.report, value, step=report["epoch"])
                reported = True
        return handle if reported else None

    def _ask(
        self,
        loaded: optuna.Study,
        request: SweepCreate,
        seen: list[_Trial],
        pruned: dict[str, str],
        limits: tuple[int, int],
        at_most: int,
    ) -> None:
        """Up to `at_most` new trials while the sweep is below its concurrency and its length (their
        jobs are written next, with any trial asked before a crash that has none)."""
        max_trials, max_concurrency = limits
        open_trials = {t.number for t in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        active = sum(not is_terminal(t.status) and t.job_id not in pruned for t in seen)
        active += len(open_trials - {t.number for t in seen})  # asked before a crash, job not yet written
        created = len(loaded.get_trials(deepcopy=False))
        for _ in range(at_most):
            if created >= max_trials or active >= max_concurrency:
                break
            study.retrying(study.ask, loaded, algorithm=request.algorithm, seed=request.seed, space=request.space)
            created, active = created + 1, active + 1

    def _fail_impossible(
        self, loaded: optuna.Study, sweep_id: str, name: str, template: dict[str, Any], with_job: set[int]
    ) -> str | None:
        """Trials asked for whose parameters make no valid config together (each value was checked
        alone at submission: e.g. views 2 with another objective than ascl) fail at once, counted
        against max_failed_trials, instead of failing the pass that would write their jobs; the
        last one's problem, or None."""
        problem = None
        for trial in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in with_job:
                continue
            try:
                trials.trial_job(
                    template,
                    sweep_id=sweep_id,
                    sweep_name=name,
                    number=trial.number,
                    params=trial.params,
                    data_root=self.settings.data_root,
                )
            except trials.UNMAKEABLE as error:
                problem = f"trial {trial.number} {trial.params}: {error}"
                study.retrying(loaded.tell, trial.number, state=TrialState.FAIL)
                logger.warning("sweep.trial_impossible sweep_id=%s %s", sweep_id, problem)
        return problem

    # the sweep's rows ----------------------------------------------------------------------------
    def _stop_for_failures(self, session: Session, sweep: Sweep, failed: int, impossible: str | None) -> None:
        sweep.status, sweep.outcome = SweepStatus.STOPPING.value, SweepStatus.FAILED.value
        sweep.reason = f"{failed} trials failed (max_failed_trials {sweep.max_failed_trials})"
        if impossible is not None:
            sweep.reason += f"; the parameters of {impossible[:1000]}"
        for job in records.trials(session, sweep.id):
            if job.status == JobStatus.QUEUED:
                store.cancel(session, job.id, actor="sweep", reason=f"sweep {sweep.id} stopped: {sweep.reason}")
        logger.warning("sweep.failed sweep_id=%s %s", sweep.id, sweep.reason)

    def _end_unreadable(self, sweep_id: str, error: ValidationError) -> None:
        """A stored request this version's rules refuse would fail every pass: the sweep stops as
        FAILED with the reason, its trials cancelled, and ends once they have; its MLflow run is
        closed without a summary. A field this version does not know is most likely a newer
        version's (an API upgraded before the control plane): that sweep is left running, warned of
        once, though a user's cancel still ends it."""
        unknown_field = any(problem["type"] == "extra_forbidden" for problem in error.errors())
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "request"
        # capped: a stored dict key (a searched field's name) can be in the place named
        reason = f"its stored request no longer reads under this version's rules ({where}: {problem['msg']})"[:500]
        if unknown_field and sweep_id not in self._awaiting_upgrade:
            self._awaiting_upgrade.add(sweep_id)
            logger.warning(
                "sweep.unknown_field sweep_id=%s: left running until this version knows it; %s", sweep_id, reason
            )
        with session_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            if sweep.status == SweepStatus.RUNNING and not unknown_field:  # a cancel, already stopping it, stays
                sweep.status, sweep.outcome, sweep.reason = SweepStatus.STOPPING.value, SweepStatus.FAILED.value, reason
                for job in records.trials(session, sweep_id):
                    if not is_terminal(job.status):
                        store.cancel(session, job.id, actor="sweep", reason=f"sweep {sweep_id} stopped: {reason}")
                logger.error("sweep.unreadable sweep_id=%s %s", sweep_id, reason)
            if sweep.status == SweepStatus.STOPPING and records.active_trials(session, sweep_id) == 0:
                self._end(sweep, completed=0)
            run_id, status = sweep.mlflow_run_id, SweepStatus(sweep.status)
        if status not in ENDED:
            return
        if run_id is not None:
            self.tracker.finish_run(run_id, _run_status(status))
        with session_scope(self.sessions) as session:
            records.get(session, sweep_id).summarized = True

    def _add_trial_job(self, session: Session, sweep: Sweep, number: int, params: dict[str, Any]) -> None:
        new = trials.trial_job(
            sweep.base_spec,
            sweep_id=sweep.id,
            sweep_name=sweep.name,
            number=number,
            params=params,
            data_root=self.settings.data_root,
        )
        store.add_job(session, new, idempotency_key=f"sweep-{sweep.id}-t{number}", body_hash=sweep.id)
        session.flush()
        logger.info("sweep.trial sweep_id=%s trial=%d params=%s", sweep.id, number, params)

    def _end(self, sweep: Sweep, completed: int) -> None:
        if sweep.status == SweepStatus.STOPPING:
            sweep.status = sweep.outcome or SweepStatus.CANCELLED.value
        elif completed:
            sweep.status, sweep.reason = SweepStatus.SUCCEEDED.value, f"{completed} trials completed"
        else:
            sweep.status, sweep.reason = SweepStatus.FAILED.value, "no trial completed"
        sweep.outcome, sweep.finished_at = None, store.now()
        logger.info("sweep.ended sweep_id=%s status=%s", sweep.id, sweep.status)

    # MLflow ------------------------------------------------------------------------------------
    def _ensure_parent_run(self, sweep_id: str, request: SweepCreate) -> None:
        with read_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            if sweep.mlflow_run_id is not None:
                return
            name, owner = sweep.name, sweep.owner
        params = {f"space.{key}": dim.model_dump_json(exclude_defaults=True) for key, dim in request.space.items()}
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
        with read_scope(self.sessions) as session:
            sweep = records.get(session, sweep_id)
            run_id, best = sweep.mlflow_run_id, sweep.best
            rows = [
                {
                    "trial": job.trial_number,
                    "job_id": job.id,
                    "status": records.trial_state(job.status, job.error_class),
                    **trials.params_of(job.spec, list(request.space)),
                    **{
                        o.metric: objectives.final_value(o.metric, job.result, job.metrics_history or [])
                        for o in request.objective
                    },
                }
                for job in records.trials(session, sweep_id)
            ]
        if run_id is not None:
            self._summarize(run_id, request, status, best, rows)
        with session_scope(self.sessions) as session:
            records.get(session, sweep_id).summarized = True

    def _summarize(
        self, run_id: str, request: SweepCreate, status: str, best: dict[str, Any] | None, rows: list[dict[str, Any]]
    ) -> None:
        best_values = zip(request.objective, _best_values(best), strict=False)
        metrics = {f"best_{o.metric.replace('.', '_')}": value for o, value in best_values}
        self.tracker.finish_sweep_run(
            run_id,
            status=_run_status(SweepStatus(status)),
            metrics=metrics,
            files=summary_files(rows, request),
        )


def _run_status(status: SweepStatus) -> str:
    """The MLflow status of an ended sweep's parent run."""
    return {SweepStatus.SUCCEEDED: "FINISHED", SweepStatus.FAILED: "FAILED"}.get(status, "KILLED")


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


def _best_values(best: dict[str, Any] | None) -> list[float]:
    if best is None or "best_trial" not in best:
        return []
    return [float(v) for v in best["best_trial"]["values"]]
