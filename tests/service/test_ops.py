"""Operations endpoints over real HTTP routing: Prometheus exposition that is well-formed and cannot
be forged through a label value."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.db import session_scope
from service.jobs import store
from service.metrics import Metric, render
from tests.service.test_store import new_job


@pytest.fixture
def api(sessions):
    dispatcher = [Metric.single("ascl_dispatcher_cycles_total", "counter", "Dispatcher cycles run.", 3)]
    with TestClient(create_app(sessions, dispatcher_metrics=lambda: dispatcher)) as client:
        yield client


def parse(exposition: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    helps, types, samples = {}, {}, []
    for line in exposition.splitlines():
        if line.startswith("# HELP "):
            name, text = line[7:].split(" ", 1)
            helps[name] = text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ", 1)
            types[name] = kind
        else:
            samples.append(line)
    return helps, types, samples


def test_every_metric_has_help_and_the_right_type(api, sessions):
    with session_scope(sessions) as session:
        store.add_job(session, new_job(queue="gpu"), idempotency_key=None, body_hash="h")
    helps, types, samples = parse(api.get("/metrics").text)
    names = {re.match(r"[a-z_]+", sample).group(0) for sample in samples}
    assert names <= set(helps)
    assert names <= set(types)
    assert all(helps[name] for name in helps)
    assert types["ascl_dispatcher_cycles_total"] == "counter"
    assert types["ascl_gpu_seconds_total"] == "counter"
    assert types["ascl_queue_depth"] == "gauge"
    assert 'ascl_queue_depth{queue="gpu"} 1.0' in samples


def test_a_crafted_label_value_cannot_forge_a_series(sessions, api):
    crafted = 'x"} 1e9\nascl_gpu_seconds_total 1e9\n# '
    with session_scope(sessions) as session:  # a queue name from before names were validated
        store.add_job(session, new_job(queue=crafted), idempotency_key=None, body_hash="h")
    _, _, samples = parse(api.get("/metrics").text)
    assert [s for s in samples if s.startswith("ascl_gpu_seconds_total")] == ["ascl_gpu_seconds_total 0.0"]
    depth = [s for s in samples if s.startswith("ascl_queue_depth")]
    assert depth == ['ascl_queue_depth{queue="x\\"} 1e9\\nascl_gpu_seconds_total 1e9\\n# "} 1.0']


def test_render_escapes_backslashes_quotes_and_newlines():
    text = render([Metric("m", "gauge", "h.", [({"q": 'a\\b"c\nd'}, 2)])])
    assert text.splitlines()[-1] == 'm{q="a\\\\b\\"c\\nd"} 2.0'


def test_requests_are_counted_by_route_template_not_by_raw_path_or_method(api):
    for job_id in ("a" * 32, "b" * 32, "c" * 32):
        assert api.get(f"/api/v1/jobs/{job_id}").status_code == 401  # no token here
    assert api.request("BREW", "/api/v1/jobs").status_code == 405
    api.get("/no/such/path")
    _, types, samples = parse(api.get("/metrics").text)
    assert types["ascl_http_requests_total"] == "counter"
    assert 'ascl_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="401"} 3.0' in samples
    assert 'ascl_http_requests_total{method="other",route="/api/v1/jobs",status="405"} 1.0' in samples
    assert 'ascl_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in samples
    assert not any("aaaa" in sample or "BREW" in sample for sample in samples)
