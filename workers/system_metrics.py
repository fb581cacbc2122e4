"""System metrics of one attempt (CPU, memory, disk, network, and each GPU where NVML finds one) in
the job's MLflow run under `system/<host>/`, so an attempt retried on another machine keeps its own
curves and continues the step count of the one before it."""

from __future__ import annotations

import socket
from types import TracebackType

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's monitor publishes only after a full sampling interval and drops what it sampled when
    it is stopped, so an attempt shorter than one interval had no system metrics at all. This one
    publishes its pending samples when it stops. `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` (seconds)
    still overrides the interval."""

    def __init__(self, run_id: str, *, sampling_interval_s: float = 10.0) -> None:
        host = socket.gethostname()
        super().__init__(run_id, sampling_interval=sampling_interval_s, resume_logging=True, node_id=host)

    def __enter__(self) -> SystemMetrics:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.finish()

    def finish(self) -> None:
        if self._process is not None:
            self._shutdown_event.set()
            self._process.join()
            if pending := self.aggregate_metrics():
                self.publish_metrics(pending)
        super().finish()  # joins the stopped thread and flushes the batch to MLflow
