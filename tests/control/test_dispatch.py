"""The dispatcher's claim step on SQLite and PostgreSQL: when no queued request fits what is free,
the cycle ends without reading and ordering the whole queue (the usual state of a full cluster with
a long queue); once one fits, the whole-queue plan runs and claims."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from control.dispatcher import Dispatcher
from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.jobs import attempts, queueing, store
from service.jobs.status import JobStatus
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token


class OneNode:
    """An 8-CPU node with as many CPUs free as the test says."""

    def __init__(self) -> None:
        self.free_cpus = 0.0

    def nodes(self) -> list[tuple[dict[str, float], dict[str, float]]]:
        return [({"CPU": self.free_cpus, "GPU": 0.0}, {"CPU": 8.0, "GPU": 0.0})]


class ClaimOnly(Dispatcher):
    """Claims as the real dispatcher does; submitting to Ray is another test's business."""

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


@pytest.fixture
def api(sessions):
    app = create_app(sessions, cluster=StaticCluster({"CPU": 8.0}))
    with TestClient(app, headers=bearer(make_token(sessions))) as client:
        yield client


def queue(api, cpus: int) -> str:
    response = api.post("/api/v1/jobs", json={"preset": "digits-ascl", "resources": {"cpus": cpus}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_no_plan_while_nothing_queued_fits_then_the_plan_claims(api, sessions, tmp_path, monkeypatch):
    first, second = queue(api, 2), queue(api, 2)
    held = queue(api, 1)
    assert api.post(f"/api/v1/jobs/{held}/hold").status_code == 200
    cluster = OneNode()
    dispatcher = ClaimOnly(sessions, cluster, None, ServiceSettings(data_dir=tmp_path))  # type: ignore[arg-type]
    dispatcher.submitted = []

    def no_plan(*args: object, **kwargs: object) -> None:
        raise AssertionError("planned although no queued request fits")

    cluster.free_cpus = 1.0  # the held 1-CPU job would fit, but it may not start
    with monkeypatch.context() as patch:
        patch.setattr("control.dispatcher.plan", no_plan)
        dispatcher.dispatch()
    assert dispatcher.submitted == []

    cluster.free_cpus = 3.0
    dispatcher.dispatch()
    assert dispatcher.submitted == [first]  # the oldest; the second does not fit beside it
    with session_scope(sessions) as session:
        statuses = {job_id: store.get_job(session, job_id).status for job_id in (first, second, held)}
    assert statuses == {first: JobStatus.CLAIMED, second: JobStatus.QUEUED, held: JobStatus.QUEUED}


def test_an_eval_whose_train_job_succeeds_during_the_cycle_starts_with_its_model_version(
    api, sessions, database_url, tmp_path, monkeypatch
):
    """On PostgreSQL each statement of the cycle's transaction sees what committed before it: the
    train job may succeed between two of them. The eval it depends on is claimed only with the
    version that success recorded (it once started without one and failed at once)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's transaction reads one snapshot: no commit lands between its statements")
    response = api.post("/api/v1/jobs", json={"preset": "digits-ascl", "model_name": "racing"})
    train = response.json()["id"]
    with session_scope(sessions) as session:
        job = store.get_job(session, train)
        assert attempts.claim(session, job, dispatcher="test", checkpoint_dir=str(tmp_path)) is not None
        for status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, train, status, actor="test", reason="driven")
    response = api.post("/api/v1/jobs", json={"kind": "eval", "model": train, "depends_on": [{"job": train}]})
    assert response.status_code == 201, response.text
    evaluation = response.json()["id"]

    running_jobs = queueing.running_jobs

    def succeeding_meanwhile(session):  # another transaction, committed in the middle of the cycle's
        with session_scope(sessions) as other:
            values = {"registered_model_version": "1", "mlflow_run_id": "0123456789abcdef0123456789abcdef"}
            store.transition(other, train, JobStatus.SUCCEEDED, actor="test", reason="done", values=values)
        return running_jobs(session)

    cluster = OneNode()
    cluster.free_cpus = 8.0
    dispatcher = ClaimOnly(sessions, cluster, None, ServiceSettings(data_dir=tmp_path))  # type: ignore[arg-type]
    dispatcher.submitted = []
    monkeypatch.setattr(queueing, "running_jobs", succeeding_meanwhile)
    dispatcher.dispatch()
    assert dispatcher.submitted == [evaluation]
    with session_scope(sessions) as session:
        target = store.get_job(session, evaluation).target
    assert (target["model_version"], target["run_id"]) == ("1", "0123456789abcdef0123456789abcdef")
