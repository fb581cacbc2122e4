"""GET /api/v1/models over many registered versions, one JSON line per figure: the first request
(each model's versions read once, to count them), the requests after it (the counts kept until a
model changes; the dashboard asks every two seconds), and in the same run what the list cost when it
read every version of every model at each request. A local SQLite MLflow store, the app in-process.

    python bench/bench_models.py --models 10 --versions 1000 --out bench/results/service-cpu-2core-dev-models.jsonl
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from figures import emit
from mlflow import MlflowClient

from control.tracking import Tracker
from service.api.app import create_app
from service.auth import models, tokens
from service.auth.principal import Principal, Role
from service.cluster import StaticCluster
from service.db import make_engine, make_sessionmaker, session_scope
from service.db.migrate import upgrade
from service.settings import ServiceSettings

FIGURES = {"robustness.clean_acc": "0.9", "robustness.pgd_acc": "0.4"}  # tags as an evaluation writes them


def registered(root: Path, *, models_count: int, versions: int) -> tuple[Tracker, list[str]]:
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "artifacts").as_uri())
    _, run_id = tracker.ensure_run(experiment="bench", job_id="b" * 32, run_name="bench", tags={})
    client = MlflowClient(tracker.tracking_uri)
    names = [f"bench-model-{i}" for i in range(models_count)]
    for name in names:
        client.create_registered_model(name)
        for _ in range(versions):
            client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=FIGURES)
    return tracker, names


def milliseconds(action: object, samples: int) -> list[float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        timings.append(1000 * (time.perf_counter() - started))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--versions", type=int, default=1000, help="versions of each model")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    shape = {"models": args.models, "versions": args.versions, "machine": machine}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        tracker, names = registered(root, models_count=args.models, versions=args.versions)
        emit({"figure": "register_versions_s", "value": round(time.perf_counter() - started, 1), **shape}, args.out)
        url = f"sqlite:///{root / 'jobs.db'}"
        upgrade(url)
        sessions = make_sessionmaker(make_engine(url))
        with session_scope(sessions) as session:
            for name in names:
                models.claim(session, name, Principal(subject="alice", role=Role.USER), group=None)
            _, token = tokens.create(
                session, tokens.NewToken(subject="alice", role=Role.USER, name="bench", created_by="bench")
            )
        app = create_app(sessions, settings=ServiceSettings(data_dir=root), cluster=StaticCluster(), registry=tracker)
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api:

            def listed() -> None:
                assert len(api.get("/api/v1/models").json()["models"]) == args.models

            first = milliseconds(listed, 1)[0]
            after = milliseconds(listed, args.samples)
        every_version = milliseconds(lambda: [tracker.versions(name) for name in names], max(args.samples // 5, 1))
        for figure, value in (
            ("models_list_first_ms", first),
            ("models_list_after_p50_ms", statistics.median(after)),
            ("every_version_read_p50_ms", statistics.median(every_version)),
        ):
            emit({"figure": figure, "value": round(value, 1), **shape}, args.out)


if __name__ == "__main__":
    main()
