"""What Ray reserves for a job equals what the dispatcher counted for it: the entrypoint's own
reservation plus, for a data-parallel job, Ray Train's placement group of per-worker bundles."""

from __future__ import annotations

import pytest

from control.ray_cluster import entrypoint_reservation
from service.contracts import WorkerResources
from service.scheduling.model import Request
from workers.gang import scaling

ENTRYPOINT_KEYS = {"CPU": "entrypoint_num_cpus", "GPU": "entrypoint_num_gpus", "memory": "entrypoint_memory"}


def ray_reservation(resources: dict) -> dict[str, float]:
    entrypoint = entrypoint_reservation(resources)
    reserved = {key: float(entrypoint.get(name) or 0.0) for key, name in ENTRYPOINT_KEYS.items()}
    if resources["workers"] > 1:
        per_worker = WorkerResources.model_validate({k: v for k, v in resources.items() if k != "workers"})
        config = scaling(resources["workers"], per_worker)
        assert config.placement_strategy == "PACK"
        assert config.use_gpu == (resources["gpus"] > 0)
        for key, amount in config.resources_per_worker.items():
            reserved[key] += amount * config.num_workers
    return reserved


@pytest.mark.parametrize(
    "resources",
    [
        {"gpus": 1.0, "cpus": 8.0, "memory_gb": 16.0, "workers": 4},
        {"gpus": 0.0, "cpus": 1.0, "memory_gb": None, "workers": 2},
        {"gpus": 0.5, "cpus": 2.0, "memory_gb": None, "workers": 3},
        {"gpus": 1.0, "cpus": 4.0, "memory_gb": 8.0, "workers": 1},
        {"gpus": 0.0, "cpus": 1.0, "memory_gb": None, "workers": 1},
    ],
)
def test_ray_reserves_exactly_what_the_dispatcher_counted(resources):
    counted = Request.of(resources)
    reserved = ray_reservation(resources)
    assert reserved == pytest.approx({key: counted.total(key) for key in ENTRYPOINT_KEYS})


def test_a_gang_entrypoint_reserves_nothing():
    assert entrypoint_reservation({"gpus": 1.0, "cpus": 8.0, "memory_gb": 4.0, "workers": 2}) == {
        "entrypoint_num_cpus": 0
    }
