"""One running stack (Ray, an MLflow tracking server, the API) that the suites in this package share,
started once per database and stopped when the package is done, before the next package's stack."""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import start_service

# The databases: both by default; scripts/test picks PostgreSQL alone to stay within CI's time (SQLite,
# the embedded default, runs end to end in the demo, dashboard, model and multi-GPU suites, and every
# database test below the stack runs on both).
STACK_DATABASES = os.environ.get("ASCL_TEST_STACK_DATABASES", "sqlite,postgresql").split(",")


@pytest.fixture(scope="package", params=STACK_DATABASES)
def service(request, tmp_path_factory):
    if request.param == "postgresql":
        request.getfixturevalue("postgres_server")
    data_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    with start_service(data_dir, request.param, mlflow_server=True) as running:
        yield running
