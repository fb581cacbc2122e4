"""Submit → RUNNING on an idle local Ray, for bench_service.py's `--ray`: the whole embedded stack
(`running_stack`: local Ray, MLflow, dispatcher) with the API served in this process."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import uvicorn
from http_load import BODY
from mlflow import MlflowClient

from control.serve import running_stack
from service.client import AsclClient
from service.settings import ServiceSettings


def bench_submit_to_running(workdir: Path, *, jobs: int) -> list[dict[str, object]]:
    """POST → RUNNING on an idle local Ray: dominated by starting the worker process (Python, torch).
    Then one 4-epoch job for the time its training thread spends on MLflow logging and heartbeats
    (the `tracking_overhead_*` metrics every run logs)."""
    settings = ServiceSettings(
        data_dir=workdir / "ray",
        mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        port=0,
        local_ray_num_cpus=2,
        poll_interval_s=0.2,
        heartbeat_interval_s=0.5,
        auto_eval=False,  # the registered models' evaluations would compete with what is timed
    )
    with running_stack(settings) as stack:
        server = uvicorn.Server(uvicorn.Config(stack.app(), log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": stack.listeners}, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        client = AsclClient(stack.settings.api_url, token=stack.admin_token)
        latencies = []
        for _ in range(jobs):
            started = time.perf_counter()
            job = client.submit(BODY)
            while client.get(job["id"])["status"] not in ("RUNNING", "SUCCEEDED", "FAILED"):
                time.sleep(0.05)
            latencies.append(time.perf_counter() - started)
            client.wait(job["id"], timeout_s=300, poll_s=0.2)
        tracked = client.wait(client.submit({**BODY, "overrides": {"train.epochs": 4}})["id"], timeout_s=600)
        server.should_exit = True
        mlflow = MlflowClient(stack.tracker.tracking_uri)
        history = {
            key: [
                m.value for m in sorted(mlflow.get_metric_history(tracked["mlflow_run_id"], key), key=lambda m: m.step)
            ]
            for key in ("tracking_overhead_s", "epoch_seconds")
        }
    # epoch 0 holds no epoch-end logging yet (it is counted with the epoch after it)
    overhead, epoch_s = history["tracking_overhead_s"][1:], history["epoch_seconds"][1:]
    return [
        {
            "bench": "submit_to_running",
            "jobs": jobs,
            "p50_s": round(statistics.median(latencies), 2),
            "max_s": round(max(latencies), 2),
            "note": "RUNNING = Ray reports the entrypoint running",
        },
        {
            "bench": "tracking_overhead",
            "epochs": len(overhead),
            "overhead_ms_per_epoch_p50": round(statistics.median(overhead) * 1e3, 1),
            "overhead_ms_per_epoch_max": round(max(overhead) * 1e3, 1),
            "epoch_s_p50": round(statistics.median(epoch_s), 2),
            "fraction_max": round(max(o / e for o, e in zip(overhead, epoch_s, strict=True)), 5),
            "note": "training-thread time in MLflow logging + heartbeats; digits-ascl epochs on CPU",
        },
    ]
