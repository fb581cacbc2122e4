"""One running service on the embedded defaults (SQLite, a local MLflow store, a local Ray) that the
model, dashboard and multi-GPU suites share, started once and stopped when this package is done.
The standard evaluation of registered versions is on, kept small (32 examples, PGD-3, APGD-CE +
APGD-T); Ray has 4 logical CPUs, so that a gang's reservation can be told from one more CPU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import Running, start_service


@pytest.fixture(scope="package")
def embedded(tmp_path_factory) -> Iterator[Running]:
    with start_service(
        tmp_path_factory.mktemp("embedded"),
        "sqlite",
        local_ray_num_cpus=4,
        auto_eval=True,
        auto_eval_autoattack="custom",
        auto_eval_examples=32,
        auto_eval_pgd_steps=3,
    ) as service:
        yield service
