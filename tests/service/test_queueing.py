"""Queue state in the database (SQLite and PostgreSQL): dependencies that are met, pending or can no
longer be met, holds, queues that must exist, usage charged for fair share, and every waiting job
explained by the API from the same plan the dispatcher uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.jobs import queueing, store
from service.jobs.status import JobStatus
from service.scheduling.model import Policy
from service.scheduling.planner import Capacity
from tests.conftest import bearer, make_token
from tests.service.test_store import new_job

JOB = {"preset": "digits-ascl"}


@pytest.fixture
def api(sessions):
    with TestClient(
        create_app(sessions, cluster=StaticCluster({"CPU": 8.0})), headers=bearer(make_token(sessions))
    ) as c:
        yield c


def end(sessions, job_id, status):
    with session_scope(sessions) as session:
        if status == JobStatus.CANCELLED:
            store.cancel(session, job_id, actor="t", reason="t")
            return
        for step in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.RUNNING, status):
            store.transition(session, job_id, step, actor="t", reason="t")


def blocked(sessions):
    with session_scope(sessions) as session:
        return {w.id: w.blocked_by for w in queueing.load(session).waiting}


def test_a_dependency_is_met_by_success_or_for_any_by_an_end(api, sessions):
    parent = api.post("/api/v1/jobs", json=JOB).json()["id"]
    on_success = api.post("/api/v1/jobs", json={**JOB, "depends_on": [{"job": parent}]}).json()["id"]
    on_any = api.post("/api/v1/jobs", json={**JOB, "depends_on": [{"job": parent, "on": "any"}]}).json()["id"]
    assert blocked(sessions)[on_success] == blocked(sessions)[on_any] == parent
    end(sessions, parent, JobStatus.FAILED)
    state = blocked(sessions)
    assert state[on_success] == parent  # never eligible: it is cancelled, whatever the read order
    assert state[on_any] is None
    with session_scope(sessions) as session:
        assert queueing.failed_dependencies(session) == [(on_success, parent, "FAILED")]
    refused = api.post("/api/v1/jobs", json={**JOB, "depends_on": [{"job": parent}]})
    assert (refused.status_code, refused.json()["field"]) == (422, "depends_on.0.job")
    assert "ended FAILED" in refused.json()["detail"]


def test_depends_on_names_existing_jobs_and_a_queue_must_exist(api):
    missing = api.post("/api/v1/jobs", json={**JOB, "depends_on": [{"job": "nope"}]})
    assert (missing.status_code, missing.json()["field"]) == (422, "depends_on.0.job")
    unknown = api.post("/api/v1/jobs", json={**JOB, "queue": "defualt"})
    assert (unknown.status_code, unknown.json()["field"]) == (422, "queue")
    assert "did you mean 'default'" in unknown.json()["detail"]


def test_a_queues_default_priority_applies_to_jobs_that_set_none(api):
    api.put("/api/v1/queues/urgent", json={"default_priority": 5})
    assert api.post("/api/v1/jobs", json={**JOB, "queue": "urgent"}).json()["priority"] == 5
    assert api.post("/api/v1/jobs", json={**JOB, "queue": "urgent", "priority": -1}).json()["priority"] == -1


def test_usage_is_charged_with_decay(sessions):
    policy = Policy(half_life_s=3600, cpu_weight=0.5)
    with session_scope(sessions) as session:
        queueing.charge(session, queue="q", owner="a", resources={"gpus": 1, "cpus": 2}, seconds=100, policy=policy)
    with session_scope(sessions) as session:
        used = queueing.load(session).usage[("q", "a")]
        assert used.value == pytest.approx(200.0)  # (1 GPU + 0.5 x 2 CPUs) x 100 s
        row = session.get(queueing.Usage, ("q", "a"))
        row.at = row.at - timedelta(hours=1)  # an hour later ...
    with session_scope(sessions) as session:
        queueing.charge(session, queue="q", owner="a", resources={"cpus": 2}, seconds=10, policy=policy)
    with session_scope(sessions) as session:
        assert queueing.load(session).usage[("q", "a")].value == pytest.approx(100.0 + 10.0, rel=1e-3)  # halved + new


def test_the_api_explains_each_waiting_job_with_the_dispatchers_plan(api, sessions):
    api.put("/api/v1/queues/small", json={"user_max_cpus": 1})
    with session_scope(sessions) as session:  # what the dispatcher last saw: one node, 2 CPUs, 1 free
        queueing.save_snapshot(session, Capacity(free=[{"CPU": 1.0}], total=[{"CPU": 2.0}]))
    first = api.post("/api/v1/jobs", json={**JOB, "resources": {"cpus": 1}}).json()["id"]
    second = api.post("/api/v1/jobs", json={**JOB, "resources": {"cpus": 1}}).json()["id"]
    held = api.post("/api/v1/jobs", json={**JOB, "hold": True}).json()["id"]
    too_big = api.post("/api/v1/jobs", json={**JOB, "resources": {"cpus": 4}, "force_queue": True}).json()["id"]
    dependent = api.post("/api/v1/jobs", json={**JOB, "depends_on": [{"job": first}]}).json()["id"]
    running = api.post("/api/v1/jobs", json={**JOB, "queue": "small", "resources": {"cpus": 1}}).json()["id"]
    limited = api.post("/api/v1/jobs", json={**JOB, "queue": "small", "resources": {"cpus": 1}}).json()["id"]
    with session_scope(sessions) as session:
        for step in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.RUNNING):
            store.transition(session, running, step, actor="t", reason="t")
    reasons = {
        job_id: api.get(f"/api/v1/jobs/{job_id}").json()["pending_reason"]
        for job_id in (first, second, held, too_big, dependent, limited)
    }
    assert reasons == {
        first: "STARTING",
        second: "RESOURCES",
        held: "HELD",
        too_big: "INFEASIBLE",
        dependent: "DEPENDENCY",
        limited: "USER_LIMIT",
    }
    shown = api.get(f"/api/v1/jobs/{second}").json()
    # one order across queues: the queue 'small' has had no use yet, so its job is dealt before second
    assert api.get(f"/api/v1/jobs/{limited}").json()["queue_position"] == 2
    assert shown["queue_position"] == 3
    assert shown["estimated_start"] is None  # the running job reports no ETA: unknown, not invented


def test_a_job_committed_while_the_queue_is_read_is_never_seen_without_its_dependencies(sessions, database_url):
    """On PostgreSQL each statement of the read sees what committed before it. A job and its
    dependencies commit together; one committed between the read of the jobs and that of the
    dependencies must not look free to start (it once did, and an eval started without its model)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's transaction reads one snapshot: no commit lands between its statements")
    with session_scope(sessions) as session:
        parent, _ = store.add_job(session, new_job(), idempotency_key=None, body_hash="p")
        parent_id = parent.id
    added: list[str] = []

    def commit_a_dependent_job(*args):  # once, after the read's first statement
        if added:
            return
        with session_scope(sessions) as other:
            child, _ = store.add_job(other, new_job(), idempotency_key=None, body_hash="c")
            queueing.add_dependencies(other, child.id, [(parent_id, "success")])
            added.append(child.id)

    session = sessions()
    try:
        event.listen(session.connection(), "after_cursor_execute", commit_a_dependent_job)
        waiting = {w.id: w for w in queueing.load(session).waiting}
    finally:
        session.close()
    assert added
    assert added[0] not in waiting or waiting[added[0]].blocked_by == parent_id
