"""The service's invariants under failures, checked against the database, MLflow and the process
table: every accepted job ends in exactly one terminal state, never two live attempts of one job,
no MLflow run left open, no worker process left behind."""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import session_scope
from service.db.models import Job, JobEvent
from service.jobs.status import TERMINAL
from tests.integration.conftest import wait_for

RUN_STATUS = {"SUCCEEDED": "FINISHED", "CANCELLED": "KILLED"}  # else FAILED


def workers_alive(job_ids: set[str] | None = None) -> dict[str, dict[int, int]]:
    """{job id: {attempt number: pid}} of the live worker processes, from /proc (a worker's
    environment names its job and attempt)."""
    alive: dict[str, dict[int, int]] = defaultdict(dict)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"workers.entrypoint" not in argv or argv[0].endswith(b"sh"):  # the worker, not Ray's shell
                continue
            variables = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # it ended meanwhile
            continue
        environ = dict(item.split("=", 1) for item in variables if "=" in item)
        job = environ.get("ASCL_JOB_ID")
        if job and (job_ids is None or job in job_ids) and environ.get("ASCL_ATTEMPT", "").isdigit():
            alive[job][int(environ["ASCL_ATTEMPT"])] = int(entry.name)
    return alive


class ProcessWatch:
    """Samples the worker processes in the background: the largest number of attempts of one job
    seen alive at the same moment (the invariant is 1)."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.most: dict[str, int] = defaultdict(int)
        self.seen: dict[str, set[int]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            for job, live in workers_alive().items():
                self.most[job] = max(self.most[job], len(live))
                self.seen[job] |= set(live)


def check_invariants(sessions: sessionmaker[Session], tracker_uri: str, job_ids: list[str]) -> None:
    from mlflow import MlflowClient

    with session_scope(sessions) as session:
        jobs = {
            job.id: (job.status, job.mlflow_run_id) for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))
        }
        terminal_events: dict[str, list[str]] = defaultdict(list)
        for event in session.scalars(select(JobEvent).where(JobEvent.job_id.in_(job_ids))):
            if event.to_status in {s.value for s in TERMINAL}:
                terminal_events[event.job_id].append(event.to_status)
    assert set(jobs) == set(job_ids), "every accepted job is in the database"
    # first: a superseded attempt's worker, left running on a lost node, must end by itself
    wait_for(lambda: not workers_alive(set(job_ids)), timeout_s=60, what="no worker process left behind")
    for job_id, (status, run_id) in jobs.items():
        assert status in {s.value for s in TERMINAL}, f"job {job_id} ended in no terminal state: {status}"
        assert terminal_events[job_id] == [status], f"job {job_id}: terminal transitions {terminal_events[job_id]}"
        if run_id is not None:
            run = MlflowClient(tracker_uri).get_run(run_id)
            assert run.info.status == RUN_STATUS.get(status, "FAILED"), f"job {job_id} {status}: run {run.info.status}"
