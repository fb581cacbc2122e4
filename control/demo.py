"""The README's demo: a small ASCL job on the digits data, from REST submission to a registered model."""

from __future__ import annotations

import json
import sys

import httpx

from service.cli.render import progress_line
from service.client import ApiError, ApiUnreachable, AsclClient

DEMO_JOB = {
    "kind": "train",
    "preset": "digits-ascl",
    "name": "demo: ASCL on digits",
    "overrides": {"train.epochs": 6, "eval.pgd_steps": 10},
    "tags": ["demo"],
    "model_name": "digits-ascl-demo",
}


def run_demo(api_url: str, mlflow_url: str, *, token: str) -> int:
    """0 once the demo job has a registered model; else 1, with one line on standard error when the
    service could not be followed (it stops, e.g. after losing its Ray head) rather than a traceback."""
    client = AsclClient(api_url, token=token)
    try:
        job = client.submit(DEMO_JOB)
        print(f"demo: submitted job {job['id']} ({job['status']}); following it...", flush=True)
        done = client.wait(job["id"], timeout_s=900, on_update=lambda j: print(f"demo: {progress_line(j)}", flush=True))
    except (ApiError, TimeoutError) as error:  # refused, or still running after 15 minutes
        sys.stderr.write(f"demo: {error}\n")
        return 1
    except (ApiUnreachable, httpx.HTTPError):
        sys.stderr.write(f"demo: the service at {api_url} stopped; the demo stops with it\n")
        return 1
    result = done.get("result") or {}
    test = result.get("test") or {}
    print(
        json.dumps(
            {
                "job": f"{api_url}/api/v1/jobs/{done['id']}",
                "status": done["status"],
                "clean_acc": test.get("clean_acc"),
                "pgd_acc": test.get("pgd_acc"),
                "positive_fraction": result.get("positive_fraction"),
                "negative_fraction": result.get("negative_fraction"),
                "mlflow_run": done.get("mlflow_run_url") or f"{mlflow_url} run {done.get('mlflow_run_id')}",
                "registered_model": f"models:/{done.get('model_name')}/{done.get('registered_model_version')}",
                "error": done.get("error_message"),
            },
            indent=2,
        ),
        flush=True,
    )
    return 0 if done["status"] == "SUCCEEDED" and done.get("registered_model_version") else 1
