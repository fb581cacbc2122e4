"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from service.api.deps import Sessions
from service.db import read_scope
from service.db.models import Job
from service.metrics import Metric, render

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response, sessions: Sessions) -> dict[str, object]:
    checks: dict[str, bool] = {}
    try:
        with read_scope(sessions) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:  # readiness reports, it does not raise
        checks["database"] = False
    checks["ray"] = bool(request.app.state.cluster.ready())
    checks["mlflow"] = bool(request.app.state.mlflow_ready())
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return {"ready": ready, "checks": checks}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, sessions: Sessions) -> Response:
    with read_scope(sessions) as session:
        rows = session.execute(select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status)).all()
        gpu_seconds = session.execute(select(func.coalesce(func.sum(Job.gpu_seconds), 0.0))).scalar_one()
    exposition = [
        Metric(
            "ascl_jobs",
            "gauge",
            "Jobs by queue and state.",
            [({"queue": queue, "status": status}, count) for queue, status, count in rows],
        ),
        Metric(
            "ascl_queue_depth",
            "gauge",
            "Queued jobs per queue.",
            [({"queue": queue}, count) for queue, status, count in rows if status == "QUEUED"],
        ),
        Metric.single("ascl_gpu_seconds_total", "counter", "GPU-seconds held by ended attempts.", float(gpu_seconds)),
        request.app.state.request_counts.metric(),
        *request.app.state.dispatcher_metrics(),
    ]
    return Response(render(exposition), media_type="text/plain; version=0.0.4")
