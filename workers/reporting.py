"""An ascl Reporter for service runs: progress goes to the API as heartbeats, epoch metrics to MLflow
and the API, and the heartbeat's answer becomes the training loop's stop check (cancellation).
The network calls happen off the training thread: heartbeats (each epoch's metrics included) from
a background thread, which also keeps the attempt alive through long evaluations, and MLflow
metrics from MLflow's own logging thread. `flush()` waits for both.

The time the training thread spends in these callbacks is measured and logged with each epoch
(`tracking_overhead_s`, `tracking_overhead_fraction` of the epoch's training time): the target is
under 1% of an epoch, and every run shows whether it holds.

A worker that cannot reach the API for longer than `api_loss_s` stops itself at the next step: the
last complete epoch's checkpoint is kept, and the control plane retries the attempt once it can."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow

from ascl.training.callbacks import EpochSummary, StepProgress
from service.contracts import HEARTBEAT_INTERVAL_S, EpochReport, Heartbeat, Phase, Progress
from workers.api_client import ApiClient, Superseded

logger = logging.getLogger(__name__)


class ServiceReporter:
    def __init__(self, api: ApiClient, *, interval_s: float = HEARTBEAT_INTERVAL_S, api_loss_s: float = 600.0) -> None:
        self.api = api
        self.interval_s = interval_s
        self.api_loss_s = api_loss_s
        self.started = time.monotonic()
        self.last_contact = self.started
        self.progress = Progress()
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._wake = threading.Event()  # an epoch ended: send its metrics now, not at the next interval
        self._lock = threading.Lock()
        self._sending_epochs = threading.Lock()  # flush() and the thread: epochs reach the API in order
        self._epochs: list[EpochReport] = []  # epochs not yet sent to the API
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._overhead_s = 0.0  # spent in the callbacks below since the last epoch's metrics were taken
        self._first_epoch: int | None = None

    def __enter__(self) -> ServiceReporter:
        self._send()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join(timeout=self.interval_s + 5)

    def flush(self) -> None:
        """Send every epoch's metrics to the API and MLflow now (before reporting the outcome)."""
        self._send_epochs()
        mlflow.flush_async_logging()

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()

    def still_current(self) -> bool:
        """Ask the API now (not at the next heartbeat) whether this attempt may go on: before a step
        that must happen once per job, such as logging its model."""
        self._send()
        return not self.should_stop()

    def set_phase(self, phase: Phase) -> None:
        with self._lock:
            self.progress = self.progress.model_copy(update={"phase": phase})

    def on_step(self, progress: StepProgress) -> None:
        with self._timed():
            self._step(progress)

    def _step(self, progress: StepProgress) -> None:
        elapsed = time.monotonic() - self.started
        done = progress.step - self._begun_at(progress.epoch) * (progress.total_steps // progress.epochs)
        eta = elapsed / done * (progress.total_steps - progress.step) if done > 0 else None
        with self._lock:
            self.progress = self.progress.model_copy(
                update={
                    "phase": Phase.TRAINING,
                    "epoch": progress.epoch,
                    "epochs": progress.epochs,
                    "step": progress.step,
                    "total_steps": progress.total_steps,
                    "images_per_s": round(progress.images_per_s, 1),
                    "eta_s": round(eta, 1) if eta is not None else None,
                    "lr": progress.lr,
                    "metrics": progress.metrics,
                }
            )

    def on_epoch_end(self, summary: EpochSummary) -> None:
        with self._timed():  # counted with the next epoch: this epoch's figure is taken here
            self._epoch_end(summary)

    def _epoch_end(self, summary: EpochSummary) -> None:
        overhead, self._overhead_s = self._overhead_s, 0.0
        metrics = {f"train_{k}": v for k, v in summary.train.items()}
        metrics |= {f"val_{k}": v for k, v in summary.val.items()}
        metrics |= {"images_per_s": summary.images_per_s, "lr": summary.lr, "epoch_seconds": summary.seconds}
        metrics |= {
            "tracking_overhead_s": overhead,
            "tracking_overhead_fraction": overhead / max(summary.seconds, 1e-9),
        }
        # queued for MLflow's logging thread: a remote tracking server's round trip would be paid by
        # the training loop at every epoch otherwise; flush() waits for them
        elapsed = time.monotonic() - self.started
        mlflow.log_metrics(metrics, step=summary.epoch, synchronous=False)
        done, remaining = summary.epoch + 1 - self._begun_at(summary.epoch), summary.epochs - summary.epoch - 1
        with self._lock:
            self.progress = self.progress.model_copy(
                update={
                    "phase": Phase.TRAINING,
                    "epoch": summary.epoch,
                    "epochs": summary.epochs,
                    "images_per_s": round(summary.images_per_s, 1),
                    "lr": summary.lr,
                    "eta_s": round(elapsed / max(done, 1) * remaining, 1),
                    "metrics": summary.train,
                    "val": summary.val,
                }
            )
            self._epochs.append(EpochReport.model_validate(summary.as_dict()))
        self._wake.set()

    def _begun_at(self, epoch: int) -> int:
        """The epoch this attempt began at: its first report's (a resumed attempt's is its checkpoint's,
        and counting the epochs before it as this attempt's work made its ETA several times short)."""
        if self._first_epoch is None:
            self._first_epoch = epoch
        return self._first_epoch

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None:
        key = "best_checkpoint" if is_best else "checkpoint"
        with self._timed(), self._lock:
            self.progress = self.progress.model_copy(update={key: str(path), f"{key}_epoch": epoch})

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._overhead_s += time.perf_counter() - started

    def _beat(self) -> None:
        while not self._done.is_set():
            try:
                if self._wake.wait(self.interval_s):
                    self._wake.clear()
                    self._send_epochs()
                else:
                    self._send()
            except Exception:  # a dead heartbeat thread would get a live attempt stopped as hung
                logger.exception("heartbeat.error")

    def _send_epochs(self) -> None:
        """Each pending epoch in its own heartbeat, once and in order."""
        with self._sending_epochs:
            with self._lock:
                epochs, self._epochs = self._epochs, []
            for epoch in epochs:
                self._send(epoch=epoch)

    def _send(self, epoch: EpochReport | None = None) -> None:
        with self._lock:
            progress = self.progress
        try:
            action = self.api.heartbeat(Heartbeat(progress=progress, epoch=epoch))
        except Superseded as error:
            logger.warning("attempt.superseded %s", error)
            self.stop_requested.set()
            return
        except ConnectionError as error:  # keep training for a while: the API may come back
            silent = time.monotonic() - self.last_contact
            logger.warning("heartbeat.failed silent_s=%.0f %s", silent, error)
            if silent > self.api_loss_s:
                logger.error("attempt.api_lost silent_s=%.0f: stopping at the next step", silent)
                self.stop_requested.set()
            return
        except httpx.HTTPStatusError as error:  # this report refused (say 422): the next one may pass
            logger.error("heartbeat.refused status=%d %s", error.response.status_code, error.response.text[:500])
            return
        self.last_contact = time.monotonic()
        if action == "stop":
            self.stop_requested.set()
