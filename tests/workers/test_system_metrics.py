"""The worker's system metrics against a real MLflow store."""

from __future__ import annotations

import socket

import mlflow
import pytest
from mlflow import MlflowClient

from workers.system_metrics import SystemMetrics

pytestmark = pytest.mark.integration


def test_an_attempt_shorter_than_the_sampling_interval_still_logs_system_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("system-metrics")).info.run_id
    key = f"system/{socket.gethostname()}/cpu_utilization_percentage"

    for _attempt in range(2):  # a retried attempt continues the step count of the one before it
        with SystemMetrics(run_id, sampling_interval_s=60):
            pass  # stops long before the first 60 s interval ends

    assert [m.step for m in client.get_metric_history(run_id, key)] == [0, 1]
    assert f"system/{socket.gethostname()}/system_memory_usage_megabytes" in client.get_run(run_id).data.metrics
