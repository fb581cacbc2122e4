"""Schemathesis over the whole API, authenticated as an admin (so every route is reachable), on
SQLite and PostgreSQL: no input the schema's generators can produce gives a server error, and every
response conforms to the documented schema, status codes and content types."""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.cluster import StaticCluster
from service.settings import ServiceSettings
from tests.conftest import bearer, make_token

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 15  # x every operation x 2 modes x 2 databases: well under a minute on two cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Positive data (what the schema allows) and negative data (what it forbids: wrong types, out of
# range, missing fields), every operation.


def test_no_server_errors_and_responses_match_the_schema(sessions, tmp_path):
    settings_ = ServiceSettings(data_dir=tmp_path, config_dir=tmp_path / "config")
    app = create_app(sessions, settings=settings_, cluster=StaticCluster({"CPU": 8.0, "GPU": 2.0}))
    headers = bearer(make_token(sessions))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a part of it

    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same cases every run: a failure is found again
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, operation.label  # nothing to negate: no parameters
        except (Exception, FailureGroup) as error:  # collect every operation's failures, report them together
            failures.append(f"{operation.label} ({mode.value} data): {error!r}"[:2000])
    assert not failures, "\n\n".join(failures)
