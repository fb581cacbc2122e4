"""Who may do what, over real HTTP routing on SQLite and PostgreSQL: API tokens (hashed, expiring,
revocable), roles, ownership of jobs and model names, shared details, and an OIDC identity provider
whose keys are served by a real local HTTP server."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.auth import tokens
from service.auth.bootstrap import ensure_admin_token
from service.auth.principal import Role
from service.cluster import StaticCluster
from service.credentials import remember_token_file, token_for
from service.db import make_engine, make_sessionmaker, session_scope
from service.db.migrate import upgrade
from service.db.models import ApiToken, Job, JobEvent
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token

JOB = {"preset": "digits-ascl"}


def app_for(sessions, **settings):
    return create_app(sessions, settings=ServiceSettings(**settings), cluster=StaticCluster({"CPU": 8.0}))


@pytest.fixture
def people(sessions):
    return {
        "admin": make_token(sessions, "root", "admin"),
        "alice": make_token(sessions, "alice", "user", groups=("lab",)),
        "bob": make_token(sessions, "bob", "user"),
        "carol": make_token(sessions, "carol", "user", groups=("lab",)),
        "vic": make_token(sessions, "vic", "viewer"),
    }


@pytest.fixture
def api(sessions):
    with TestClient(app_for(sessions)) as client:
        yield client


def as_(api, token, method, path, *, headers=None, **kwargs):
    return api.request(method, path, headers={**(headers or {}), **bearer(token)}, **kwargs)


def test_requests_without_a_valid_token_are_401(api, sessions):
    for method, path in (("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs/x/logs")):
        response = api.request(method, path, json=JOB)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
    for header in ("Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer ascl_" + "0" * 24 + "_" + "x" * 43):
        assert api.get("/api/v1/jobs", headers={"Authorization": header}).status_code == 401
    assert api.get("/healthz").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_tokens_are_stored_hashed_and_stop_working_when_revoked_or_expired(api, sessions, monkeypatch):
    token = make_token(sessions, "dave", "user")
    with session_scope(sessions) as session:
        row = session.query(ApiToken).filter(ApiToken.subject == "dave").one()
        assert token.rsplit("_", 1)[1] not in json.dumps([row.secret_hash, row.id, row.name])
        _, expiring = tokens.create(
            session,
            tokens.NewToken(subject="dave", role=Role.USER, name="t", created_by="t", expires_in=timedelta(hours=1)),
        )
    assert as_(api, token, "GET", "/api/v1/whoami").json()["subject"] == "dave"
    assert as_(api, expiring, "GET", "/api/v1/whoami").status_code == 200  # cached from here on
    # an hour later for the token checks (a real one-second expiry failed on a machine that slow)
    later = tokens.now() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(tokens, "now", lambda: later)
    expired = as_(api, expiring, "GET", "/api/v1/whoami")
    assert (expired.status_code, "expired" in expired.json()["detail"]) == (401, True)
    revoked = as_(api, token, "DELETE", f"/api/v1/tokens/{row.id}")
    assert revoked.json()["revoked_at"] is not None
    assert as_(api, token, "GET", "/api/v1/whoami").status_code == 401  # at once: the cache forgets it


def test_a_subjects_live_tokens_are_bounded(sessions):
    with TestClient(app_for(sessions, max_tokens_per_user=2)) as api:
        token = make_token(sessions, "frank", "user")  # the first of two
        second = as_(api, token, "POST", "/api/v1/tokens", json={"name": "laptop"})
        assert second.status_code == 201
        refused = as_(api, token, "POST", "/api/v1/tokens", json={"name": "desktop"})
        assert (refused.status_code, refused.json()["field"]) == (422, "subject")
        assert "frank already has 2 live tokens; revoke one first" in refused.json()["detail"]
        as_(api, token, "DELETE", f"/api/v1/tokens/{second.json()['id']}")
        assert as_(api, token, "POST", "/api/v1/tokens", json={"name": "desktop"}).status_code == 201


def test_a_tokens_last_use_is_recorded_and_not_rewritten_on_every_request(api, sessions):
    token = make_token(sessions, "erin", "user")
    first = as_(api, token, "GET", "/api/v1/tokens").json()[0]["last_used_at"]  # written before it is answered
    assert first is not None
    api.app.state.authenticator.tokens.forget(tokens.TOKEN_PATTERN.match(token)["id"])  # verified again, not due
    assert as_(api, token, "GET", "/api/v1/tokens").json()[0]["last_used_at"] == first


def test_verifying_a_token_never_waits_for_sqlites_write_lock(tmp_path):
    """A writer holds SQLite's lock (as the submissions do back to back under load): a token that
    must be checked against the database again is checked at once (it waited in the busy handler,
    for seconds under load, before)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade(url)
    engine = make_engine(url)
    token = make_token(make_sessionmaker(engine), "frank", "user")
    verifier = tokens.TokenVerifier(make_sessionmaker(engine), ttl_s=10)
    outcome = []
    with engine.connect() as writer:
        writer.exec_driver_sql("UPDATE api_token SET name = 'held'")  # BEGIN IMMEDIATE: the write lock
        checking = threading.Thread(target=lambda: outcome.append(verifier.verified(token)))
        checking.start()
        checking.join(timeout=5)
        finished = not checking.is_alive()
        writer.rollback()
    checking.join()
    engine.dispose()
    assert finished, "the check waited for the writer"
    assert outcome[0].principal.subject == "frank"
    assert outcome[0].use_due is not None


def test_only_the_owner_or_an_admin_changes_a_job_and_events_name_the_identity(api, people):
    job = as_(api, people["alice"], "POST", "/api/v1/jobs", json=JOB).json()
    assert job["owner"] == "alice"
    for verb, body in (("cancel", None), ("retry", {})):
        refused = as_(api, people["bob"], "POST", f"/api/v1/jobs/{job['id']}/{verb}", json=body)
        assert refused.status_code == 403, verb
        assert "belongs to alice" in refused.json()["detail"]
    assert as_(api, people["alice"], "POST", f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "CANCELLED"
    other = as_(api, people["alice"], "POST", "/api/v1/jobs", json=JOB).json()
    assert as_(api, people["admin"], "POST", f"/api/v1/jobs/{other['id']}/cancel").status_code == 200
    retried = as_(api, people["alice"], "POST", f"/api/v1/jobs/{job['id']}/retry", json={})
    assert retried.json()["owner"] == "alice"
    actors = [e["actor"] for e in as_(api, people["admin"], "GET", f"/api/v1/jobs/{other['id']}/events").json()]
    assert actors == ["alice", "root"]


def test_other_users_see_a_summary_of_a_job_not_its_details(api, people, sessions):
    job = as_(api, people["alice"], "POST", "/api/v1/jobs", json=JOB).json()
    seen = as_(api, people["bob"], "GET", f"/api/v1/jobs/{job['id']}").json()
    assert (seen["redacted"], seen["spec"], seen["status"]) == (True, {}, "QUEUED")
    after = {"kind": "eval", "model": job["id"], "depends_on": [{"job": job["id"]}]}
    evaluation = as_(api, people["alice"], "POST", "/api/v1/jobs", json=after).json()
    assert evaluation["name"] == f"eval {job['id']}"  # by default, what it evaluates: not for bob's eyes
    assert as_(api, people["bob"], "GET", f"/api/v1/jobs/{evaluation['id']}").json()["name"] == "eval"
    with session_scope(sessions) as session:  # as if it had run, failed and been retried
        row = session.get(Job, job["id"])
        row.mlflow_run_id, row.registered_model_version, row.error_class = "0123abcd", "3", "OOM"
        row.retried_from = job["id"]
    seen = as_(api, people["bob"], "GET", f"/api/v1/jobs/{job['id']}").json()
    private = (
        "mlflow_run_id",
        "mlflow_run_url",
        "model_name",
        "registered_model_version",
        "error_class",
        "retried_from",
    )
    assert {key: seen[key] for key in private} == dict.fromkeys(private)
    assert as_(api, people["alice"], "GET", f"/api/v1/jobs/{job['id']}").json()["mlflow_run_id"] == "0123abcd"
    assert [j["redacted"] for j in as_(api, people["bob"], "GET", "/api/v1/jobs").json()["items"]] == [True, True]
    for path in ("logs", "metrics", "events"):
        assert as_(api, people["bob"], "GET", f"/api/v1/jobs/{job['id']}/{path}").status_code == 403, path
    assert as_(api, people["alice"], "GET", f"/api/v1/jobs/{job['id']}").json()["spec"]["name"] == "digits-ascl"
    with TestClient(app_for(sessions, share_job_details=True)) as shared:
        assert as_(shared, people["bob"], "GET", f"/api/v1/jobs/{job['id']}").json()["redacted"] is False
        assert as_(shared, people["bob"], "GET", f"/api/v1/jobs/{job['id']}/metrics").status_code == 200
        assert as_(shared, people["bob"], "POST", f"/api/v1/jobs/{job['id']}/cancel").status_code == 403


def test_viewers_read_and_cannot_submit(api, people):
    refused = as_(api, people["vic"], "POST", "/api/v1/jobs", json=JOB)
    assert (refused.status_code, "needs the user role" in refused.json()["detail"]) == (403, True)
    assert as_(api, people["vic"], "GET", "/api/v1/jobs").status_code == 200


def test_priority_beyond_the_users_range_needs_the_admin_role(api, people):
    refused = as_(api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "priority": 50})
    assert (refused.status_code, refused.json()["field"]) == (422, "priority")
    assert "needs the admin role" in refused.json()["detail"]
    assert as_(api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "priority": 10}).status_code == 201
    assert as_(api, people["admin"], "POST", "/api/v1/jobs", json={**JOB, "priority": 50}).status_code == 201


def test_a_queues_default_priority_set_by_an_admin_applies_to_users_beyond_their_range(api, people):
    assert as_(api, people["admin"], "PUT", "/api/v1/queues/hi", json={"default_priority": 50}).status_code == 200
    queued = as_(api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "queue": "hi"})
    assert (queued.status_code, queued.json()["priority"]) == (201, 50)
    asked = as_(api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "queue": "hi", "priority": 50})
    assert (asked.status_code, asked.json()["field"]) == (422, "priority")


def test_model_names_belong_to_their_creator_or_group(api, people):
    claimed = {**JOB, "model_name": "robust-cnn", "model_group": "lab"}
    assert as_(api, people["alice"], "POST", "/api/v1/jobs", json=claimed).status_code == 201
    taken = as_(api, people["bob"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "robust-cnn"})
    assert (taken.status_code, "belongs to alice" in taken.json()["detail"]) == (403, True)
    assert (
        as_(api, people["carol"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "robust-cnn"}).status_code == 201
    )
    assert (
        as_(api, people["admin"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "robust-cnn"}).status_code == 201
    )
    not_a_member = as_(
        api, people["bob"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "x", "model_group": "lab"}
    )
    assert (not_a_member.status_code, not_a_member.json()["field"]) == (422, "model_group")


def test_a_retry_trains_under_a_model_name_only_as_its_owner_may_now(api, people, sessions):
    """Carol trained under the lab's name; out of the lab, she retries that job as she is now."""
    assert as_(
        api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "robust-cnn", "model_group": "lab"}
    )
    job = as_(api, people["carol"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "robust-cnn"}).json()
    assert as_(api, people["carol"], "POST", f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
    left_the_lab = make_token(sessions, "carol", "user")
    refused = as_(api, left_the_lab, "POST", f"/api/v1/jobs/{job['id']}/retry", json={})
    assert (refused.status_code, "belongs to alice" in refused.json()["detail"]) == (403, True)
    assert as_(api, people["carol"], "POST", f"/api/v1/jobs/{job['id']}/retry", json={}).status_code == 201


def test_a_retried_evaluation_reads_its_source_only_while_it_is_shared(sessions, people):
    """Bob evaluated alice's job while the site shared job details; once it no longer does, his retry
    is refused as a new evaluation of it would be."""
    with TestClient(app_for(sessions, share_job_details=True)) as shared:
        job = as_(shared, people["alice"], "POST", "/api/v1/jobs", json=JOB).json()
        after = {"kind": "eval", "model": job["id"], "depends_on": [{"job": job["id"]}]}
        evaluation = as_(shared, people["bob"], "POST", "/api/v1/jobs", json=after)
        assert evaluation.status_code == 201, evaluation.text
        assert as_(shared, people["bob"], "POST", f"/api/v1/jobs/{evaluation.json()['id']}/cancel").status_code == 200
    with TestClient(app_for(sessions)) as private:
        refused = as_(private, people["bob"], "POST", f"/api/v1/jobs/{evaluation.json()['id']}/retry", json={})
        assert refused.status_code == 403, refused.text


def test_short_lived_or_revoked_tokens_do_not_pile_up(sessions, people):
    """Only live tokens count against the limit: a loop of expired or revoked ones grew the table.
    The latest 20 to end are kept for the list; live ones are never deleted."""
    with session_scope(sessions) as session:
        expired = tokens.NewToken(
            subject="bob", role=Role.USER, name="expired", created_by="tests", expires_in=timedelta(seconds=-1)
        )
        tokens.create(session, expired)
    with TestClient(app_for(sessions, max_tokens_per_user=3, token_cache_s=0)) as api:  # every call verified
        early = as_(api, people["bob"], "POST", "/api/v1/tokens", json={"name": "early"}).json()
        for i in range(30):
            made = as_(api, people["bob"], "POST", "/api/v1/tokens", json={"name": f"t{i}", "expires_in_s": 60})
            assert made.status_code == 201, made.text
            assert as_(api, people["bob"], "DELETE", f"/api/v1/tokens/{made.json()['id']}").status_code == 200
            if i == 25:  # made first, ended late: among the latest to end
                assert as_(api, people["bob"], "DELETE", f"/api/v1/tokens/{early['id']}").status_code == 200
        listed = {row["name"] for row in as_(api, people["bob"], "GET", "/api/v1/tokens").json()}
        # the last creation kept the 20 latest to end then (t10 to t28, early); t29 was revoked after it
        assert listed == {"test", "early"} | {f"t{i}" for i in range(10, 30)}
        assert as_(api, people["bob"], "GET", "/api/v1/whoami").status_code == 200  # the live one still works


def test_a_quote_in_a_model_name_is_refused_at_submission(api, people):
    response = as_(api, people["alice"], "POST", "/api/v1/jobs", json={**JOB, "model_name": "it's"})
    assert (response.status_code, response.json()["field"]) == (422, "model_name")


def test_users_manage_their_own_tokens_admins_everyones(api, people):
    created = as_(api, people["bob"], "POST", "/api/v1/tokens", json={"name": "laptop", "expires_in_s": 3600})
    assert created.status_code == 201
    assert created.json()["token"].startswith("ascl_")
    assert (created.json()["subject"], created.json()["role"]) == ("bob", "user")
    for body in ({"subject": "alice"}, {"role": "admin"}, {"kind": "service"}):
        assert as_(api, people["bob"], "POST", "/api/v1/tokens", json=body).status_code == 403, body
    listed = as_(api, people["bob"], "GET", "/api/v1/tokens").json()
    assert {row["subject"] for row in listed} == {"bob"}
    assert all("token" not in row for row in listed)
    alices = as_(api, people["admin"], "GET", "/api/v1/tokens", params={"subject": "alice"}).json()
    assert as_(api, people["bob"], "DELETE", f"/api/v1/tokens/{alices[0]['id']}").status_code == 403
    service = as_(api, people["admin"], "POST", "/api/v1/tokens", json={"subject": "ci", "kind": "service"})
    assert as_(api, service.json()["token"], "GET", "/api/v1/whoami").json()["kind"] == "service"


def test_the_admin_token_file_is_private_reused_and_replaced_when_revoked(sessions, tmp_path):
    path = tmp_path / "data" / "admin-token"
    first = ensure_admin_token(sessions, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_admin_token(sessions, path) == first
    with session_scope(sessions) as session:
        tokens.revoke(session, tokens.TOKEN_PATTERN.match(first)["id"])
    assert ensure_admin_token(sessions, path) != first
    config = remember_token_file(tmp_path / "config", "http://127.0.0.1:8000/", path)
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert token_for(tmp_path / "config", "http://127.0.0.1:8000") == path.read_text()
    assert token_for(tmp_path / "config", "http://elsewhere:8000") is None


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_):
        pass


@pytest.fixture
def identity_provider():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    handler = type("Jwks", (_Jwks,), {"body": json.dumps({"keys": [{**public, "kid": "k1", "use": "sig"}]}).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = "https://idp.example"

    def sign(claims, *, key_to_use=key):
        now = int(time.time())
        payload = {"iss": issuer, "aud": "ascl", "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key_to_use, algorithm="RS256", headers={"kid": "k1"})

    yield issuer, f"http://127.0.0.1:{server.server_address[1]}/jwks.json", sign
    server.shutdown()


def test_an_identity_providers_jwts_are_accepted_for_its_issuer_and_audience(sessions, identity_provider):
    issuer, jwks_url, sign = identity_provider
    app = app_for(sessions, oidc_issuer=issuer, oidc_audience="ascl", oidc_jwks_url=jwks_url)
    with TestClient(app) as api:
        user = as_(api, sign({"sub": "erin", "groups": ["lab"]}), "GET", "/api/v1/whoami").json()
        assert user == {"subject": "erin", "role": "user", "groups": ["lab"], "kind": "user", "via": "oidc"}
        assert as_(api, sign({"sub": "root", "roles": ["admin"]}), "GET", "/api/v1/whoami").json()["role"] == "admin"
        job = as_(api, sign({"sub": "erin"}), "POST", "/api/v1/jobs", json=JOB).json()
        assert job["owner"] == "erin"
        forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad in (
            sign({"sub": "erin", "aud": "other"}),
            sign({"sub": "erin", "iss": "https://evil.example"}),
            sign({"sub": "erin", "exp": int(time.time()) - 10}),
            sign({"sub": "erin"}, key_to_use=forged),
        ):
            assert as_(api, bad, "GET", "/api/v1/whoami").status_code == 401


def test_an_identity_providers_subject_outside_a_user_names_alphabet_is_401(sessions, identity_provider):
    """The subject becomes job owners, event actors and `?owner=` filters: a NUL byte (a server error on
    PostgreSQL), a newline (a forged log line) or a bidi override would reach all of them. Groups that
    no token could name are left out rather than refusing their member."""
    issuer, jwks_url, sign = identity_provider
    app = app_for(sessions, oidc_issuer=issuer, oidc_audience="ascl", oidc_jwks_url=jwks_url)
    with TestClient(app) as api:
        for subject in ("a\u0000b", "eve\nINFO forged", "\u202eevil", "", " erin", "x" * 101):
            response = as_(api, sign({"sub": subject}), "POST", "/api/v1/jobs", json=JOB)
            assert response.status_code == 401, (subject, response.text)
            assert "names no user" in response.json()["detail"]
        for subject in ("auth0|5f7c8ec7c33c6c004bbafe82", "repo:octo/app:ref:refs/heads/main", "o'brien@example.org"):
            job = as_(api, sign({"sub": subject}), "POST", "/api/v1/jobs", json=JOB)
            assert job.status_code == 201, (subject, job.text)
            assert as_(api, sign({"sub": subject}), "GET", "/api/v1/jobs", params={"owner": subject}).json()["items"]
        groups = ["lab", "CN=Lab Users,OU=People", "g" * 65, "ok\u0000"]
        user = as_(api, sign({"sub": "erin@example.org", "groups": groups}), "GET", "/api/v1/whoami").json()
        assert (user["subject"], user["groups"]) == ("erin@example.org", ["lab"])


def test_an_event_row_never_names_a_header_the_client_chose(api, people, sessions):
    job = as_(api, people["alice"], "POST", "/api/v1/jobs", json=JOB, headers={"X-User": "mallory"}).json()
    with session_scope(sessions) as session:
        actors = {e.actor for e in session.query(JobEvent).filter(JobEvent.job_id == job["id"])}
    assert actors == {"alice"}
