"""The control plane's Ray client refuses a Ray Client (ray://) address at once, naming what to give
instead: it talks to the GCS and the job server directly (a Ray driver would abort with the head).
While the head is away, submissions go on: the capacity check is skipped, not failed."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from control.ray_cluster import RayCluster
from tests.test_deployment import ROOT


def test_a_ray_client_address_is_refused_with_the_form_to_use():
    with pytest.raises(ValueError, match=r"GCS address \(host:port, e\.g\. head:6379\)"):
        RayCluster(address="ray://head:10001")


def test_the_compose_file_gives_the_service_the_gcs_address():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["x-service-env"]["ASCL_RAY_ADDRESS"] == "ray-head:6379"


def test_a_gcs_that_is_away_never_holds_a_submission(monkeypatch):
    """Ray's GCS client retries its connection for tens of seconds when the head is away: the
    capacity check answers at once with the last view, refreshed in the background."""
    node = {"GPU": 0.0, "CPU": 8.0, "memory": 2.0**34}
    away = threading.Event()

    def nodes(self):
        if away.is_set():
            time.sleep(1.0)  # what a GCS that is away costs a caller (tens of seconds in fact)
            raise ConnectionError("GCS unreachable")
        return [(node, node)]

    monkeypatch.setattr("control.ray_cluster.JobSubmissionClient", lambda url: None)
    monkeypatch.setattr(RayCluster, "nodes", nodes)
    monkeypatch.setattr("control.ray_cluster.LARGEST_NODE_TTL_S", 0.0)
    cluster = RayCluster(address="head:6379", dashboard_url="http://head:8265")
    assert cluster.largest_node() == node
    away.set()
    for _ in range(5):
        started = time.monotonic()
        assert cluster.largest_node() == node  # the last view, not a wait and not an error
        assert time.monotonic() - started < 0.2
        time.sleep(0.3)
