"""A worker that loses the API: it keeps training through a short outage and stops itself (at the
next step, keeping its last complete epoch's checkpoint) once the API has been silent longer than
its bound. Real HTTP against a port where nothing listens."""

from __future__ import annotations

import time

from control.ports import free_port
from workers.api_client import ApiClient, AttemptIdentity
from workers.reporting import ServiceReporter


def unreachable() -> ApiClient:
    identity = AttemptIdentity(api_url=f"http://127.0.0.1:{free_port()}", job_id="j", attempt=1, token="t")
    return ApiClient(identity, retries=1, timeout_s=1.0)


def test_a_worker_silent_past_its_bound_stops_itself():
    started = time.monotonic()
    with ServiceReporter(unreachable(), interval_s=0.2, api_loss_s=1.5) as reporter:
        assert not reporter.should_stop()  # the first failed heartbeat is within the bound
        deadline = time.monotonic() + 15
        while not reporter.should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reporter.should_stop()
    assert time.monotonic() - started >= 1.5  # not before the bound


def test_a_short_outage_does_not_stop_it():
    with ServiceReporter(unreachable(), interval_s=0.2, api_loss_s=60) as reporter:
        time.sleep(3)  # several failed heartbeats
        assert not reporter.should_stop()
