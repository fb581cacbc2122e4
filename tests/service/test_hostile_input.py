"""What a careless or hostile colleague sends, on SQLite and PostgreSQL: every value out of range, not
finite, too long or with control bytes is a 4xx naming the field (never a 5xx, never stored), bodies
over the limit are 413 however they arrive, and the operator's limits on what a job may cost are
422s naming the field and the limit, for jobs, retries and sweeps alike."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.limits import BodySizeLimit
from service.cluster import StaticCluster
from service.db import session_scope
from service.db.models import Job
from service.jobs.status import JobStatus
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token

DIGITS = {"preset": "digits-ascl", "overrides": {"train.epochs": 1}}


def nested(levels: int) -> dict:
    value: dict = {"a": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


DEEP = nested(255)


@pytest.fixture
def api(sessions, tmp_path):
    settings = ServiceSettings(data_dir=tmp_path, max_body_bytes=64_000, max_queued_per_user=3)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0, "GPU": 2.0}))
    with TestClient(app, headers=bearer(make_token(sessions))) as client:
        yield client


def raw(api, text: str):
    """A body as written, so that JSON's Infinity and NaN and huge integers arrive untouched."""
    return api.post("/api/v1/jobs", content=text, headers={"content-type": "application/json"})


def assert_nothing_stored(api) -> None:
    assert api.get("/api/v1/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (f'{{"preset": "digits-ascl", "priority": {2**40}}}', "priority"),
        (f'{{"preset": "digits-ascl", "priority": {2**70}}}', "priority"),
        (f'{{"preset": "digits-ascl", "priority": -{2**70}}}', "priority"),
        (f'{{"preset": "digits-ascl", "max_runtime_s": {2**64}}}', "max_runtime_s"),
        ('{"preset": "digits-ascl", "resources": {"memory_gb": Infinity}}', "resources.memory_gb"),
        ('{"preset": "digits-ascl", "resources": {"gpus": Infinity}}', "resources.gpus"),
        ('{"preset": "digits-ascl", "resources": {"cpus": NaN}}', "resources.cpus"),
        ('{"preset": "digits-ascl", "overrides": {"attack.eps": NaN}}', "overrides.attack.eps"),
        ('{"preset": "digits-ascl", "overrides": {"optim.lr": Infinity}}', "overrides.optim.lr"),
        (f'{{"preset": "digits-ascl", "overrides": {{"train.epochs": {2**70}}}}}', "overrides.train.epochs"),
        (f'{{"preset": "digits-ascl", "overrides": {{"seed": {2**64}}}}}', "overrides.seed"),
        (f'{{"preset": "digits-ascl", "overrides": {{"optim.lr": {10**400}}}}}', "overrides.optim.lr"),
        ('{"preset": "digits-ascl", "name": "a\\u0000b"}', "name"),
        ('{"preset": "digits-ascl", "name": "\\u202eevil"}', "name"),
        ('{"preset": "digits-ascl", "overrides": {"name": "a\\u2029b"}}', "overrides.name"),
        (json.dumps({"preset": "digits-ascl", "name": "x" * 10_000}), "name"),
        ('{"preset": "digits-ascl", "tags": {"k": "v\\u0000"}}', "tags"),
        ('{"preset": "digits-ascl", "queue": "default\\u0000"}', "queue"),
        ('{"preset": "digits-ascl", "model_name": "it\'s"}', "model_name"),
        # the experiment's name becomes the job's: PostgreSQL refuses NUL, terminals obey escapes
        ('{"preset": "digits-ascl", "overrides": {"name": "a\\u0000b"}}', "overrides.name"),
        (
            '{"preset": "digits-ascl", "overrides": {"name": "ok\\u001b[2J\\u001b]0;owned\\u0007\\rFAKE"}}',
            "overrides.name",
        ),
        ('{"preset": "digits-ascl", "overrides": {"data.data_dir": "data\\nfake"}}', "overrides.data.data_dir"),
        ('{"experiment": {"name": "n\\u0000"}}', "experiment.name"),
        ('{"kind": "eval", "model": "x\\u0000y"}', "model"),
        # a lone surrogate is no Unicode text: stored, it broke every answer that showed the job
        ('{"preset": "digits-ascl", "overrides": {"data.data_dir": "a\\ud800b"}}', "overrides"),
        ('{"preset": "digits-ascl", "overrides": {"name": "a\\udfff"}}', "overrides"),
        ('{"preset": "digits-ascl", "overrides": {"a\\ud800": 1}}', "overrides"),
        ('{"experiment": {"data": {"data_dir": ["\\udc00"]}}}', "experiment"),
        # keys are field names: an unknown one is named back, so none carries escapes or 50 kB
        ('{"preset": "digits-ascl", "overrides": {"train.epochs\\u001b[2J\\u202e": 1}}', "overrides"),
        (json.dumps({"preset": "digits-ascl", "overrides": {"x" * 50_000: 1}}), "overrides"),
        (json.dumps({"experiment": {"train": {"x" * 50_000: 1}}}), "experiment"),
        # nested past what pydantic serialises (255 levels): a 1.6 kB body
        (json.dumps({"preset": "digits-ascl", "overrides": {"train.epochs": DEEP}}), "overrides"),
        (json.dumps({"experiment": {"train": DEEP}}), "experiment"),
    ],
)
def test_out_of_range_and_control_bytes_are_422_naming_the_field(api, body, field):
    response = raw(api, body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert len(response.content) < 2000  # what was sent is named back bounded, if at all
    assert_nothing_stored(api)


def test_a_lone_surrogate_is_refused_wherever_free_json_goes_and_every_list_still_answers(api):
    job = api.post("/api/v1/jobs", json=DIGITS).json()
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    poison = '{"data.data_dir": "a\\ud800b"}'
    sweep = f'{{"base": {{"preset": "digits-ascl", "overrides": {poison}}}, "space": {{"seed": {{"values": [1]}}}}}}'
    sent = [
        ("/api/v1/jobs", f'{{"preset": "digits-ascl", "overrides": {poison}}}'),
        (f"/api/v1/jobs/{job['id']}/retry", f'{{"overrides": {poison}}}'),
        ("/api/v1/jobs", f'{{"kind": "eval", "model": "{job["id"]}", "overrides": {poison}}}'),
        ("/api/v1/sweeps?dry_run=true", sweep),
        ("/api/v1/sweeps", sweep),
    ]
    for path, body in sent:
        response = api.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert "lone surrogate" in response.json()["detail"]
    assert [j["id"] for j in api.get("/api/v1/jobs").json()["items"]] == [job["id"]]
    assert api.get("/api/v1/sweeps").json()["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs?cursor=ab%00cd",
        "/api/v1/jobs?owner=al%00ice",
        "/api/v1/jobs?queue=de%00fault",
        "/api/v1/jobs/abc%00def",
        "/api/v1/jobs/abc%00def/events",
        "/api/v1/jobs/abc%00def/logs",
        "/api/v1/sweeps?cursor=%00",
        "/api/v1/jobs?cursor=MjAyNi0wMS0wMXwA",  # base64 of '2026-01-01|' and a NUL: a well-formed cursor's shape
        "/api/v1/sweeps?cursor=MjAyNi0wMS0wMXwA",
        "/api/v1/jobs?cursor=MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHxhYmM=",  # year 1 at +05:00: before year 1 in UTC
        "/api/v1/jobs?created_after=0001-01-01T00:00:00%2B05:00",
        "/api/v1/jobs?created_before=9999-12-31T23:59:59-05:00",
        f"/api/v1/jobs?limit={2**70}",
        "/api/v1/internal/jobs/abc%00def/attempts/1/spec",
    ],
)
def test_nul_bytes_and_huge_numbers_in_urls_are_4xx(api, path):
    response = api.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


@pytest.mark.parametrize(
    ("route", "body"),
    [("heartbeat", {}), ("outcome", {"succeeded": False, "error_class": "USER_ERROR", "error_message": "x"})],
)
def test_a_workers_report_for_a_job_id_with_a_nul_byte_is_422_naming_it(api, route, body):
    """The worker routes take no user token, so anyone who reaches the API can send these."""
    response = api.post(
        f"/api/v1/internal/jobs/abc%00def/attempts/1/{route}", json=body, headers={"X-Attempt-Token": "t"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "job_id"


@pytest.mark.parametrize("route", ["heartbeat", "outcome"])
def test_a_workers_report_nested_hundreds_deep_is_422_not_a_recursion_error(api, route):
    """Read before the attempt's token is checked: anyone who reaches the API can send it."""
    deep = nested(500)
    body = {"progress": deep} if route == "heartbeat" else {"succeeded": True, "train": {"test": deep}}
    response = api.post(f"/api/v1/internal/jobs/abc/attempts/1/{route}", json=body, headers={"X-Attempt-Token": "t"})
    assert response.status_code == 422, response.text
    assert "nested more than 8 levels" in response.json()["detail"]


def test_a_stored_config_that_todays_rules_refuse_is_422_not_500(api, sessions):
    """A job stored before config strings were checked (a tab in its name) cannot be retried as it
    is: the answer names the field, never a server error."""
    job = api.post("/api/v1/jobs", json=DIGITS).json()
    with session_scope(sessions) as session:
        row = session.get(Job, job["id"])
        row.spec = {**row.spec, "name": "old\tname"}
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    retried = api.post(f"/api/v1/jobs/{job['id']}/retry", json={})
    assert (retried.status_code, retried.json()["error"]) == (422, "ConfigError")
    assert "name: must be one line of printable text" in retried.json()["detail"]


@pytest.mark.parametrize("text", ["x\u0000", "x\u2028y", "\u202eevil", "a\u2066b", "a\u200fb", "a\u061cb"])
def test_a_queue_description_with_control_bytes_is_422(api, text):
    """Unicode's line separators break a line as a newline does; its bidi controls reorder what a
    terminal or a table shows."""
    response = api.put("/api/v1/queues/q1", json={"description": text})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "description"


def test_a_sweep_whose_base_is_nested_too_deep_is_422_even_as_a_dry_run(api):
    body = {"base": {"preset": "digits-ascl", "overrides": {"train.epochs": DEEP}}, "space": {"seed": {"values": [1]}}}
    for query in ("", "?dry_run=true"):
        response = api.post(f"/api/v1/sweeps{query}", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "base.overrides"


def test_a_non_ascii_fencing_token_is_refused_not_a_server_error(api):
    submitted = api.post("/api/v1/jobs", json=DIGITS).json()
    for header in ("é€".encode(), b"\xff\xfe", b"x" * 10_000):
        response = api.get(
            f"/api/v1/internal/jobs/{submitted['id']}/attempts/1/spec", headers={"X-Attempt-Token": header}
        )
        assert response.status_code in (401, 403, 404, 409, 422), response.text


def test_bodies_over_the_limit_are_413_whether_announced_or_streamed(api):
    big = json.dumps({**DIGITS, "name": "x" * 100_000})
    assert raw(api, big).status_code == 413

    def chunks():
        for _ in range(100):
            yield b" " * 1000  # no content-length: the limit holds while the body streams in

    streamed = api.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["error"] == "RequestTooLarge"
    assert_nothing_stored(api)


def test_a_spec_above_the_services_default_limit_is_422_naming_the_field_and_the_limit(api):
    response = api.post("/api/v1/jobs", json={"preset": "digits-ascl", "overrides": {"train.epochs": 1001}})
    assert response.status_code == 422
    assert response.json()["field"] == "overrides.train.epochs"
    assert "limit of 1000" in response.json()["detail"]
    experiment = api.post("/api/v1/jobs", json={"experiment": {"eval": {"pgd_steps": 10_001}}})
    assert experiment.json()["field"] == "experiment.eval.pgd_steps", experiment.text
    assert_nothing_stored(api)


@pytest.fixture
def strict_api(sessions, tmp_path):
    """An operator who allows 3 epochs, 64 images a batch and 5 PGD steps."""
    limits = {"train.epochs": 3, "train.batch_size": 64, "attack.steps": 5}
    settings = ServiceSettings(data_dir=tmp_path, spec_limits=limits)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    with TestClient(app, headers=bearer(make_token(sessions))) as client:
        yield client


def test_the_operators_limits_apply_to_jobs_retries_and_sweeps_and_are_published(strict_api, sessions):
    api = strict_api
    published = api.get("/api/v1/limits").json()
    assert published["spec"]["train.epochs"] == 3
    assert published["spec"]["eval.pgd_steps"] == 10_000  # the service's default where the operator set none
    assert (published["requests_per_user"], published["max_running_sweeps_per_user"]) == (16, 10)
    assert published["body_deadline_s"] == 30.0
    assert (published["log_streams_per_user"], published["log_streams_total"]) == (8, 256)

    preset = api.post("/api/v1/jobs", json={"preset": "digits-ascl"})  # the preset asks for more epochs
    assert preset.status_code == 422
    assert preset.json()["field"] == "preset"
    assert "train.epochs" in preset.json()["detail"]
    assert "limit of 3" in preset.json()["detail"]

    small = {"preset": "digits-ascl", "overrides": {"train.epochs": 2, "train.batch_size": 32, "attack.steps": 5}}
    job = api.post("/api/v1/jobs", json=small)
    assert job.status_code == 201, job.text
    with session_scope(sessions) as session:
        session.get(Job, job.json()["id"]).status = JobStatus.FAILED
    retry = api.post(f"/api/v1/jobs/{job.json()['id']}/retry", json={"overrides": {"attack.steps": 6}})
    assert retry.status_code == 422
    assert retry.json()["field"] == "overrides.attack.steps"

    sweep = {"base": small, "space": {"train.epochs": {"low": 1, "high": 4, "int": True}}, "algorithm": "random"}
    refused = api.post("/api/v1/sweeps", json=sweep)
    assert refused.status_code == 422
    assert refused.json()["field"] == "space.train.epochs", refused.text
    assert "limit of 3" in refused.json()["detail"]


def test_an_unknown_limit_stops_the_service_at_start():
    with pytest.raises(ValueError, match="not a numeric experiment field"):
        ServiceSettings(spec_limits={"train.epoch": 3})
    with pytest.raises(ValueError, match="finite number"):
        ServiceSettings(spec_limits={"train.epochs": float("inf")})


def test_retries_count_against_the_users_queued_limit(api, sessions):
    first = api.post("/api/v1/jobs", json=DIGITS).json()
    with session_scope(sessions) as session:
        session.get(Job, first["id"]).status = JobStatus.FAILED
    for _ in range(3):
        assert api.post(f"/api/v1/jobs/{first['id']}/retry", json={}).status_code == 201
    refused = api.post(f"/api/v1/jobs/{first['id']}/retry", json={})
    assert refused.status_code == 422
    assert "limit is 3" in refused.json()["detail"]


def test_a_job_that_sets_no_run_time_gets_the_services_default(api):
    job = api.post("/api/v1/jobs", json=DIGITS).json()
    assert job["max_runtime_s"] == 7 * 24 * 3600
    assert api.get("/api/v1/limits").json()["default_max_runtime_s"] == 7 * 24 * 3600
    own = api.post("/api/v1/jobs", json={**DIGITS, "max_runtime_s": 60}).json()
    assert own["max_runtime_s"] == 60


def test_a_users_requests_in_progress_are_bounded(sessions, tmp_path):
    """Past `requests_per_user` at once a user's next request is 429 (it would wait for the thread
    pool and the database with everyone else's), and the slots come back as requests end."""
    settings = ServiceSettings(data_dir=tmp_path, requests_per_user=2)
    app = create_app(sessions, settings=settings, cluster=StaticCluster({"CPU": 8.0}))
    alice, bob = (bearer(make_token(sessions, name, "user")) for name in ("alice", "bob"))
    with TestClient(app) as client:
        slots = app.state.requests_in_progress
        for _ in range(2):
            slots.take("alice")  # two of alice's requests still in progress
        refused = client.get("/api/v1/jobs", headers=alice)
        assert (refused.status_code, refused.json()["error"]) == (429, "TooMany")
        assert "alice already has 2 requests in progress" in refused.json()["detail"]
        assert client.get("/api/v1/jobs", headers=bob).status_code == 200  # others are served
        slots.give_back("alice")
        assert client.get("/api/v1/jobs", headers=alice).status_code == 200
        assert slots.open == {"alice": 1}  # the request's slot was given back
        slots.give_back("alice")
        job = client.post("/api/v1/jobs", json=DIGITS, headers=alice).json()
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/logs/stream?poll_s=10", headers=alice) as stream:
            assert stream.status_code == 200
            assert slots.open == {}  # a stream is bounded by its own slots, not by these
        slots.open["root"] = 5  # past the limit: an admin is not limited
        assert client.get("/api/v1/jobs", headers=bearer(make_token(sessions, "root", "admin"))).status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_route_never_runs():
    """A client that sends a byte a minute would hold its connection for ever."""
    reached = []

    async def route(scope, receive, send):
        reached.append(scope["path"])

    async def never():
        await asyncio.sleep(3600)

    sent = []

    async def send(message):
        sent.append(message)

    limit = BodySizeLimit(route, max_bytes=1000, deadline_s=0.2)
    scope = {"type": "http", "path": "/api/v1/jobs", "headers": [(b"content-length", b"900")]}
    asyncio.run(asyncio.wait_for(limit(scope, never, send), timeout=10))
    assert sent[0]["status"] == 408
    assert b"did not arrive within 0.2 s" in sent[1]["body"]
    assert reached == []
