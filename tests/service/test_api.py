"""The REST API over HTTP (ASGI) on SQLite and PostgreSQL: bad input, idempotency, pagination."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cluster import StaticCluster
from service.db import session_scope
from service.jobs import store
from service.jobs.status import JobStatus
from tests.conftest import bearer, make_token


@pytest.fixture
def api(sessions):
    app = create_app(sessions, cluster=StaticCluster({"CPU": 8.0, "GPU": 2.0}))
    with TestClient(app, headers=bearer(make_token(sessions))) as client:
        yield client


def submit(api, body, **kwargs):
    return api.post("/api/v1/jobs", json=body, **kwargs)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"preset": "digits-acsl"}, "preset", "did you mean 'digits-ascl'"),
        ({"preset": "digits-ascl", "overrides": {"model.arch": "resnet81"}}, "overrides.model.arch", "unknown model"),
        (
            {"preset": "digits-ascl", "overrides": {"data.dataset": "imagenet"}},
            "overrides.data.dataset",
            "unknown dataset",
        ),
        ({"preset": "digits-ascl", "overrides": {"attack.eps": -0.1}}, "overrides.attack.eps", ">= 0"),
        ({"preset": "digits-ascl", "overrides": {"train.epochs": 0}}, "overrides.train.epochs", ">= 1"),
        ({"preset": "digits-ascl", "overrides": {"no.such": 1}}, "overrides.no", "unknown config section 'no'"),
        ({"experiment": {"attack": {"eps": "big"}}}, "experiment.attack.eps", "must be a number"),
        ({}, "preset", "exactly one"),
        ({"preset": "digits-ascl", "experiment": {}}, "preset", "exactly one"),
        ({"preset": "digits-ascl", "resources": {"gpus": 0.5, "cpus": 9}}, "resources.cpus", "largest node has 8"),
        ({"preset": "digits-ascl", "resources": {"gpus": 2, "workers": 2}}, "resources.gpus", "trains on one GPU"),
        ({"preset": "digits-ascl", "resources": {"gpus": 2.5}}, "resources.gpus", "a whole number"),
        ({"kind": "eval", "model": "nope", "resources": {"workers": 2}}, "resources.workers", "one worker"),
        ({"preset": "digits-ascl", "resources": {"cpus": 64}}, "resources.cpus", "force_queue"),
        ({"preset": "digits-ascl", "resources": {"gpus": -1}}, "resources.gpus", "greater than or equal to 0"),
        ({"preset": "digits-ascl", "max_runtime_s": 0}, "max_runtime_s", "greater than 0"),
        ({"preset": "digits-ascl", "kind": "predict"}, "kind", "'train' or 'eval'"),
        ({"preset": "digits-ascl", "colour": "red"}, "colour", "Extra inputs"),
        ({"kind": "eval"}, "model", "needs 'model'"),
        ({"kind": "eval", "model": "models:/"}, "model", "models:/NAME/VERSION"),
        ({"kind": "train", "preset": "digits-ascl", "model": "models:/a/1"}, "model", "only eval jobs"),
        ({"preset": "digits-ascl", "mlflow_experiment": "a/../../x"}, "mlflow_experiment", "no '..' segment"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_nothing_is_stored(api, body, field, fragment):
    response = submit(api, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert fragment in error["detail"]
    assert set(error) == {"error", "detail", "field"}
    assert api.get("/api/v1/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("asked", "stored"),
    [
        ({"gpus": 4}, {"gpus": 1.0, "workers": 4}),  # N GPUs: N data-parallel workers, one GPU each
        ({"gpus": 1, "workers": 3, "cpus": 2}, {"gpus": 1.0, "workers": 3, "cpus": 2.0}),
        ({"gpus": 1}, {"gpus": 1.0, "workers": 1}),
        ({"gpus": 0.5, "workers": 2}, {"gpus": 0.5, "workers": 2}),
    ],
)
def test_several_gpus_are_stored_as_a_gang_of_one_gpu_workers(api, asked, stored):
    response = submit(api, {"preset": "digits-ascl", "resources": asked})
    assert response.status_code == 201, response.text
    resources = api.get(f"/api/v1/jobs/{response.json()['id']}").json()["resources"]
    assert {key: resources[key] for key in stored} == stored


def test_force_queue_accepts_more_than_any_node_has(api):
    response = submit(api, {"preset": "digits-ascl", "resources": {"cpus": 64}, "force_queue": True})
    assert response.status_code == 201


def test_eval_of_an_unfinished_job_is_refused(api):
    job = submit(api, {"preset": "digits-ascl"}).json()
    response = submit(api, {"kind": "eval", "model": job["id"]})
    assert (response.status_code, response.json()["field"]) == (422, "model")
    unknown = submit(api, {"kind": "eval", "model": "nope"})
    assert (unknown.status_code, unknown.json()["field"]) == (422, "model")
    assert "no job 'nope'; to evaluate a registered model use models:/NAME/VERSION" in unknown.json()["detail"]


def test_unknown_ids_are_404_and_illegal_transitions_409(api):
    for path in ("/api/v1/jobs/nope", "/api/v1/jobs/nope/events", "/api/v1/jobs/nope/metrics"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "JobNotFound"
    assert api.post("/api/v1/jobs/nope/cancel").status_code == 404
    job = submit(api, {"preset": "digits-ascl"}).json()
    assert api.post(f"/api/v1/jobs/{job['id']}/retry", json={}).status_code == 409  # not finished
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "CANCELLED"
    again = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert (again.status_code, again.json()["error"]) == (409, "InvalidTransition")


def test_retry_creates_a_linked_job_with_overrides(api):
    job = submit(api, {"preset": "digits-ascl", "priority": 3}).json()
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    retried = api.post(f"/api/v1/jobs/{job['id']}/retry", json={"overrides": {"train.epochs": 4}})
    assert retried.status_code == 201
    body = retried.json()
    assert (body["retried_from"], body["priority"], body["spec"]["train"]["epochs"]) == (job["id"], 3, 4)
    bad = api.post(f"/api/v1/jobs/{job['id']}/retry", json={"overrides": {"attack.eps": -1}})
    assert (bad.status_code, bad.json()["field"]) == (422, "overrides.attack.eps")


def test_a_retried_eval_of_a_train_job_waits_for_its_model_or_is_refused_without_one(api, sessions):
    """The eval was cancelled while its train job ran: its retry waits for that job again, starts
    with the version it registered, and is refused once the job has ended without one."""
    train = submit(api, {"preset": "digits-ascl", "model_name": "retried-eval"}).json()["id"]
    body = {"kind": "eval", "model": train, "depends_on": [{"job": train}]}
    evaluation = submit(api, body).json()["id"]
    api.post(f"/api/v1/jobs/{evaluation}/cancel")
    waiting = api.get(f"/api/v1/jobs/{api.post(f'/api/v1/jobs/{evaluation}/retry', json={}).json()['id']}").json()
    assert (waiting["pending_reason"], waiting["target"]["model_version"]) == ("DEPENDENCY", None)

    with session_scope(sessions) as session:
        values = {"registered_model_version": "3", "mlflow_run_id": "f" * 32}
        for status in (JobStatus.CLAIMED, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
            store.transition(session, train, status, actor="test", reason="driven", values=values)
    resolved = api.post(f"/api/v1/jobs/{evaluation}/retry", json={}).json()
    assert (resolved["target"]["model_version"], resolved["target"]["run_id"]) == ("3", "f" * 32)

    failed = submit(api, {"preset": "digits-ascl", "model_name": "retried-eval"}).json()["id"]
    evaluation = submit(api, {**body, "model": failed, "depends_on": [{"job": failed}]}).json()["id"]
    for job_id in (failed, evaluation):
        api.post(f"/api/v1/jobs/{job_id}/cancel")
    refused = api.post(f"/api/v1/jobs/{evaluation}/retry", json={})
    assert (refused.status_code, refused.json()["field"]) == (422, "model")
    assert f"job {failed} ended CANCELLED with no registered model" in refused.json()["detail"]


def test_idempotency_key_over_http_including_concurrent_clients(api):
    body = {"preset": "digits-ascl", "tags": ["x"]}
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(6)

    def client():
        barrier.wait()
        response = submit(api, body, headers={"Idempotency-Key": "abc"})
        results.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for _, job_id in results}) == 1
    assert sorted(code for code, _ in results) == [200] * 5 + [201]
    conflict = submit(api, {**body, "priority": 1}, headers={"Idempotency-Key": "abc"})
    assert (conflict.status_code, conflict.json()["error"]) == (409, "IdempotencyConflict")


def test_dry_run_validates_without_enqueuing(api):
    response = api.post("/api/v1/jobs?dry_run=true", json={"preset": "digits-ascl", "overrides": {"train.epochs": 2}})
    assert response.status_code == 200
    assert response.json()["spec"]["train"]["epochs"] == 2
    assert response.json()["pending_reason"] == "DRY_RUN"
    assert api.get("/api/v1/jobs").json()["items"] == []


def test_pagination_and_filters(api):
    for name in ("q0", "q1"):
        assert api.put(f"/api/v1/queues/{name}", json={}).status_code == 200
    ids = [
        submit(api, {"preset": "digits-ascl", "tags": ["a" if i % 3 else "b"], "queue": f"q{i % 2}"}).json()["id"]
        for i in range(11)
    ]
    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/jobs", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert len(api.get("/api/v1/jobs", params={"tag": "b"}).json()["items"]) == 4
    assert len(api.get("/api/v1/jobs", params={"queue": "q1"}).json()["items"]) == 5
    assert len(api.get("/api/v1/jobs", params={"status": ["QUEUED", "RUNNING"]}).json()["items"]) == 11
    bad_status = api.get("/api/v1/jobs", params={"status": "DONE"})
    assert (bad_status.status_code, bad_status.json()["field"]) == (422, "status")  # its name, not "status.0"
    bad_cursor = api.get("/api/v1/jobs", params={"cursor": "zzz"})
    assert (bad_cursor.status_code, bad_cursor.json()["field"]) == (422, "cursor")
    assert api.get("/api/v1/jobs", params={"limit": 500}).status_code == 422


def test_time_filters_mean_the_same_instant_whatever_its_offset(api):
    """SQLite keeps timestamps as UTC text: a filter given with another offset is converted first."""
    created = datetime.fromisoformat(submit(api, {"preset": "digits-ascl"}).json()["created_at"])
    for zone in (UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))):
        before, after = (created + delta for delta in (timedelta(seconds=-1), timedelta(seconds=1)))
        since = api.get("/api/v1/jobs", params={"created_after": before.astimezone(zone).isoformat()})
        until = api.get("/api/v1/jobs", params={"created_before": after.astimezone(zone).isoformat()})
        late = api.get("/api/v1/jobs", params={"created_after": after.astimezone(zone).isoformat()})
        counts = [len(response.json()["items"]) for response in (since, until, late)]
        assert counts == [1, 1, 0], zone


def test_queued_job_shows_position_and_reason(api):
    first = submit(api, {"preset": "digits-ascl"}).json()
    second = submit(api, {"preset": "digits-ascl"}).json()
    urgent = submit(api, {"preset": "digits-ascl", "priority": 9}).json()
    assert urgent["queue_position"] is None  # submissions skip the COUNT; GET shows the position
    urgent = api.get(f"/api/v1/jobs/{urgent['id']}").json()
    assert (urgent["queue_position"], urgent["pending_reason"]) == (1, "RESOURCES")
    assert api.get(f"/api/v1/jobs/{first['id']}").json()["queue_position"] == 2
    assert api.get(f"/api/v1/jobs/{second['id']}").json()["pending_reason"] == "PRIORITY"


def test_openapi_has_examples_for_job_bodies_and_presets_are_listed(api):
    schema = api.get("/openapi.json").json()
    bodies = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in schema["paths"].values()
        for operation in path.values()
        if "requestBody" in operation
    }
    assert {"JobCreate", "RetryRequest", "Heartbeat", "AttemptOutcome", "SweepCreate", "PromoteRequest"} <= bodies
    for body in bodies:  # every request body, as the README says
        assert schema["components"]["schemas"][body].get("examples"), body
    submit_errors = schema["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert submit_errors["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    examples = schema["components"]["schemas"]["JobCreate"]["examples"]
    assert {e["kind"] for e in examples} == {"train", "eval"}
    for example in examples:
        if example["kind"] == "train" and "resources" not in example:
            assert submit(api, example).status_code == 201
    assert "paper-cifar10-resnet18-ascl" in api.get("/api/v1/presets").json()
    assert api.get("/healthz").json() == {"status": "ok"}


def test_fifty_concurrent_submissions_all_succeed(api):
    """Regression: a unit of work committed after the endpoint returned deadlocked SQLite under load
    (every pool thread waiting for the write lock held by a request waiting for a pool thread)."""
    codes: list[int] = []
    barrier = threading.Barrier(50)

    def client():
        barrier.wait()
        for _ in range(3):
            codes.append(submit(api, {"preset": "digits-ascl"}).status_code)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert codes == [201] * 150
    assert len(api.get("/api/v1/jobs", params={"limit": 200}).json()["items"]) == 150


def test_reads_do_not_wait_for_a_writer_on_sqlite(api, database_url):
    """Every SQLite transaction took the write lock, reads included: a GET queued behind any writer."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's reads never take a write lock")
    import sqlite3
    import time

    submit(api, {"preset": "digits-ascl"})
    writer = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long write transaction, e.g. a busy dispatcher
    try:
        started = time.perf_counter()
        for path in ("/api/v1/jobs", "/api/v1/queues", "/metrics"):
            assert api.get(path).status_code == 200, path
        assert time.perf_counter() - started < 5  # before: each waited for the busy timeout (30 s)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
