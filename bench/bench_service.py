"""Service benchmarks, one JSON line per figure:

1. POST /api/v1/jobs from 20 concurrent clients, each its own user with its own API token
   (SQLite, PostgreSQL), without and with an Idempotency-Key on every request: saturated (each
   client sends as soon as it is answered: the most submissions/s; latency is then concurrency /
   throughput), and paced at a fixed offered rate (500/s by default: the p99 a user sees at that load);
2. with 10,000 queued jobs over 10 queues and 50 users: GET /jobs (a page) and GET /jobs/{id}
   latency, and a dispatcher cycle: on a full cluster (no queued request fits what is free, so no
   plan is needed), and with one job's capacity freed before each cycle (the fair-share plan over
   the whole queue, and one claim);
3. POST /api/v1/sweeps planning 1,000 trials, and GET of a sweep;
4. submit → RUNNING latency on an idle local Ray cluster (--ray; `ray_latency.py`).

The API runs as its own uvicorn process (`control.asgi`), like production, and the load comes
from another process over loopback HTTP.

    python bench/bench_service.py --database sqlite --database postgresql --ray --out bench/results/service.jsonl

On a shared machine whose speed moves between minutes, `--repeat 5 --skip-queue` measures the
submissions five times (key-less and keyed interleaved, each on a fresh database): compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from dispatch_clusters import ClaimOnly, NoCapacity, OneFreedEachCycle
from figures import emit
from http_load import BODY, closed_loop, open_loop
from sqlalchemy import insert

from control.dispatcher import Dispatcher
from control.ports import free_port
from service.auth import tokens
from service.auth.principal import Role
from service.db import make_engine, make_sessionmaker, session_scope
from service.db.migrate import upgrade
from service.db.models import Job, Queue
from service.db.scratch import scratch_database
from service.jobs import store
from service.settings import ServiceSettings

QUEUES, USERS = 10, 50  # the queued jobs' spread
SWEEP = {
    "name": "bench",
    "base": BODY,
    "space": {"optim.lr": {"low": 0.001, "high": 0.1, "log": True}, "objective.temperature": {"values": [0.1, 0.2]}},
    "algorithm": "random",
    "max_trials": 1000,
    "max_concurrency": 4,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def fresh_database(kind: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", lambda: None
    return scratch_database("ascl_bench")


@contextmanager
def migrated_database(kind: str) -> Iterator[tuple[str, Path]]:
    """A new, migrated database and a scratch directory, both gone afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = fresh_database(kind, Path(tmp))
        try:
            upgrade(url)
            yield url, Path(tmp)
        finally:
            drop()


def start_api(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "ASCL_DATABASE_URL": url, "ASCL_DATA_DIR": str(workdir)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "control.asgi:create_app_from_env",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the API did not start")


def user_tokens(url: str, count: int, *, role: Role = Role.USER) -> list[str]:
    """Real API tokens (stored hashed), one per simulated user."""
    sessions = make_sessionmaker(make_engine(url))
    with session_scope(sessions) as session:
        made = [
            tokens.create(session, tokens.NewToken(subject=f"user{i}", role=role, name="bench", created_by="bench"))[1]
            for i in range(count)
        ]
    return made


def bench_submit(
    kind: str, url: str, workdir: Path, *, keyed: bool, clients: int, requests: int, rate: float
) -> list[dict[str, object]]:
    """Saturated, then paced, on a fresh database: keyed and key-less runs each start from the same
    (empty) queue, since every queued job adds to what a submission's per-user count reads."""
    users = user_tokens(url, clients)
    process, base = start_api(url, workdir)
    port = int(base.rsplit(":", 1)[1])
    rows = []
    try:
        asyncio.run(closed_loop(port, users, keyed=keyed, requests=200))  # warm-up: connections, caches
        for mode, run in (
            ("saturated", lambda: closed_loop(port, users, keyed=keyed, requests=requests)),
            (f"offered {rate:g}/s", lambda: open_loop(port, users, keyed=keyed, rate=rate, seconds=requests / rate)),
        ):
            cpu_before = time.process_time()
            seconds, latencies = asyncio.run(run())
            rows.append(
                {
                    "bench": "post_jobs",
                    "database": kind,
                    "idempotency_key": keyed,
                    "auth": "API token per user",
                    "load": mode,
                    "clients": clients,
                    "requests": len(latencies),
                    "jobs_per_s": round(len(latencies) / seconds, 1),
                    "p50_ms": round(percentile(latencies, 50) * 1e3, 2),
                    "p99_ms": round(percentile(latencies, 99) * 1e3, 2),
                    "load_generator_cpu_s": round(time.process_time() - cpu_before, 2),
                }
            )
    finally:
        process.terminate()
        process.wait()
    return rows


def fill_queue(url: str, count: int) -> None:
    engine = make_engine(url)
    now = store.now()
    spec = json.loads(json.dumps(BODY))
    rows = [
        {
            "id": uuid.uuid4().hex,
            "kind": "train",
            "name": "bench",
            "owner": f"user{i % USERS}",
            "queue": f"q{i % QUEUES}",
            "priority": i % 3,
            "tags": ["bench"],
            "tag_index": ",bench,",
            "spec": spec,
            "resources": {"cpus": 1},
            "max_infra_retries": 3,
            "experiment": "ascl",
            "status": "QUEUED",
            "created_at": now,
            "metrics_history": [],
            "attempts_made": 0,
            "infra_failures": 0,
            "version": 0,
        }
        for i in range(count)
    ]
    queues = [
        {"name": f"q{i}", "description": "bench", "updated_by": "bench", "updated_at": now} for i in range(QUEUES)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Queue), queues)
        connection.execute(insert(Job), rows)
    engine.dispose()


def bench_queue(kind: str, url: str, workdir: Path, *, queued: int, samples: int) -> list[dict[str, object]]:
    fill_queue(url, queued)
    sessions = make_sessionmaker(make_engine(url))
    with session_scope(sessions) as session:
        total = session.query(Job).filter(Job.status == "QUEUED").count()  # plus what bench_submit queued
    admin = user_tokens(url, 1, role=Role.ADMIN)[0]
    process, base = start_api(url, workdir)
    rows = []
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as http:
            some_id = http.get("/api/v1/jobs", params={"limit": 1}).json()["items"][0]["id"]
            for name, path, params in (
                ("list_jobs", "/api/v1/jobs", {"limit": 50}),
                ("list_jobs_filtered", "/api/v1/jobs", {"limit": 50, "queue": "q1", "status": "QUEUED"}),
                ("get_job", f"/api/v1/jobs/{some_id}", {}),
            ):
                timings = []
                for _ in range(samples):
                    started = time.perf_counter()
                    http.get(path, params=params).raise_for_status()
                    timings.append(time.perf_counter() - started)
                rows.append(
                    {
                        "bench": name,
                        "database": kind,
                        "queued_jobs": total,
                        "samples": samples,
                        "p50_ms": round(percentile(timings, 50) * 1e3, 2),
                        "p99_ms": round(percentile(timings, 99) * 1e3, 2),
                    }
                )
            rows += bench_sweeps(http, kind, samples=20)
    finally:
        process.terminate()
        process.wait()
    settings = ServiceSettings(data_dir=workdir)
    cases = (
        ("dispatcher_cycle", Dispatcher(sessions, NoCapacity(), None, settings)),  # type: ignore[arg-type]
        ("dispatcher_cycle_claiming", ClaimOnly(sessions, OneFreedEachCycle(), None, settings)),  # type: ignore[arg-type]
    )
    for name, dispatcher in cases:
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            if name == "dispatcher_cycle":  # the claiming case's claims never reach Ray: nothing to reconcile
                dispatcher.reconcile()  # a cycle without the repair pass, which runs once a minute
            dispatcher.dispatch()
            timings.append(time.perf_counter() - started)
        rows.append(
            {
                "bench": name,
                "database": kind,
                "queued_jobs": total,
                "queues": QUEUES,
                "users": USERS,
                "samples": 20,
                "p50_ms": round(statistics.median(timings) * 1e3, 2),
                "p99_ms": round(max(timings) * 1e3, 2),
            }
        )
    with session_scope(sessions) as session:  # the busy cluster claimed nothing, the other one a job a cycle
        assert session.query(Job).filter(Job.status == "QUEUED").count() == total - 20
    return rows


def bench_sweeps(http: httpx.Client, kind: str, *, samples: int) -> list[dict[str, object]]:
    """Creating a sweep of 1,000 trials (planned lazily: trials become jobs as slots free up) and
    reading one back."""
    created, read = [], []
    for _ in range(samples):
        started = time.perf_counter()
        sweep = http.post("/api/v1/sweeps", json=SWEEP)
        created.append(time.perf_counter() - started)
        assert sweep.status_code == 201, sweep.text
        started = time.perf_counter()
        http.get(f"/api/v1/sweeps/{sweep.json()['id']}").raise_for_status()
        read.append(time.perf_counter() - started)
    return [
        {
            "bench": name,
            "database": kind,
            "max_trials": SWEEP["max_trials"],
            "samples": samples,
            "p50_ms": round(percentile(timings, 50) * 1e3, 2),
            "p99_ms": round(percentile(timings, 99) * 1e3, 2),
        }
        for name, timings in (("create_sweep", created), ("get_sweep", read))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--clients", type=int, default=20, help="concurrent users, each with its own token")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500, help="offered submissions/s for the paced run")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure submissions this many times, each on a fresh database"
    )
    parser.add_argument("--skip-queue", action="store_true", help="submissions only: no queue, sweep, dispatch figures")
    parser.add_argument("--ray", action="store_true", help="also measure submit → RUNNING with a local Ray")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    machine = f"{platform.machine()} {os.cpu_count()} cores"

    def emit_here(row: dict[str, object]) -> None:
        emit({**row, "machine": machine}, args.out)

    for kind in args.database or ["sqlite"]:
        for repeat in range(args.repeat):  # interleaved: a slow spell of the machine meets both key modes
            for keyed in (False, True):
                with migrated_database(kind) as (url, workdir):
                    for row in bench_submit(
                        kind, url, workdir, keyed=keyed, clients=args.clients, requests=args.requests, rate=args.rate
                    ):
                        emit_here({**row, "repeat": repeat} if args.repeat > 1 else row)
        if args.skip_queue:
            continue
        with migrated_database(kind) as (url, workdir):
            for row in bench_queue(kind, url, workdir, queued=args.queued, samples=args.samples):
                emit_here(row)
    if args.ray:
        from ray_latency import bench_submit_to_running  # the embedded stack's imports (MLflow, Ray): only here

        with tempfile.TemporaryDirectory() as tmp:
            for row in bench_submit_to_running(Path(tmp), jobs=3):
                emit_here(row)


if __name__ == "__main__":
    main()
