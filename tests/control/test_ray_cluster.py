"""The control plane's Ray client refuses a Ray Client (ray://) address at once, naming what to give
instead: it talks to the GCS and the job server directly (a Ray driver would abort with the head)."""

from __future__ import annotations

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
