"""An ascl Reporter for service runs: progress goes to the API as heartbeats (from a background
thread, so long evaluations keep the attempt alive), epoch metrics to MLflow and the API, and the
heartbeat's answer becomes the training loop's stop check (cancellation)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import mlflow

from ascl.training.callbacks import EpochSummary, StepProgress
from workers.api_client import ApiClient, Superseded

logger = logging.getLogger(__name__)


class ServiceReporter:
    def __init__(self, api: ApiClient, *, interval_s: float = 10.0) -> None:
        self.api = api
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.progress: dict[str, Any] = {"phase": "starting"}
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> ServiceReporter:
        self._send()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval_s + 5)

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.progress = {**self.progress, "phase": phase}

    def on_step(self, progress: StepProgress) -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / progress.step * (progress.total_steps - progress.step) if progress.step else None
        with self._lock:
            self.progress = {
                "phase": "training",
                "epoch": progress.epoch,
                "step": progress.step,
                "total_steps": progress.total_steps,
                "images_per_s": round(progress.images_per_s, 1),
                "eta_s": round(eta, 1) if eta is not None else None,
                "lr": progress.lr,
                "metrics": progress.metrics,
            }

    def on_epoch_end(self, summary: EpochSummary) -> None:
        metrics = {f"train_{k}": v for k, v in summary.train.items()}
        metrics |= {f"val_{k}": v for k, v in summary.val.items()}
        metrics |= {"images_per_s": summary.images_per_s, "lr": summary.lr, "epoch_seconds": summary.seconds}
        mlflow.log_metrics(metrics, step=summary.epoch)
        elapsed = time.monotonic() - self.started
        remaining = summary.epochs - summary.epoch - 1
        with self._lock:
            self.progress = {
                **self.progress,
                "phase": "training",
                "epoch": summary.epoch,
                "epochs": summary.epochs,
                "images_per_s": round(summary.images_per_s, 1),
                "lr": summary.lr,
                "eta_s": round(elapsed / (summary.epoch + 1) * remaining, 1),
                "metrics": summary.train,
                "val": summary.val,
            }
        self._send(epoch_metrics=summary.as_dict())

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None:
        key = "best_checkpoint" if is_best else "checkpoint"
        with self._lock:
            self.progress = {**self.progress, key: str(path), f"{key}_epoch": epoch}

    def _beat(self) -> None:
        while not self._done.wait(self.interval_s):
            self._send()

    def _send(self, epoch_metrics: dict[str, Any] | None = None) -> None:
        with self._lock:
            progress = dict(self.progress)
        try:
            if self.api.heartbeat(progress=progress, epoch_metrics=epoch_metrics) == "stop":
                self.stop_requested.set()
        except Superseded as error:
            logger.warning("attempt.superseded %s", error)
            self.stop_requested.set()
        except ConnectionError as error:  # keep training: the monitor decides about stale attempts
            logger.warning("heartbeat.failed %s", error)
