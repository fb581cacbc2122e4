"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select, text

from service.api.deps import SessionDep
from service.db.models import Job

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response, session: SessionDep) -> dict[str, object]:
    checks: dict[str, bool] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:  # readiness reports, it does not raise
        checks["database"] = False
    checks["ray"] = bool(request.app.state.cluster.ready())
    checks["mlflow"] = bool(request.app.state.mlflow_ready())
    ready = all(checks.values())
    response.status_code = 200 if ready else 503
    return {"ready": ready, "checks": checks}


@router.get("/metrics")
def metrics(request: Request, session: SessionDep) -> Response:
    rows = session.execute(select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status)).all()
    lines = ["# HELP ascl_jobs Jobs by queue and state.", "# TYPE ascl_jobs gauge"]
    lines += [f'ascl_jobs{{queue="{queue}",status="{status}"}} {count}' for queue, status, count in rows]
    lines += ["# HELP ascl_queue_depth Queued jobs per queue.", "# TYPE ascl_queue_depth gauge"]
    lines += [f'ascl_queue_depth{{queue="{queue}"}} {count}' for queue, status, count in rows if status == "QUEUED"]
    for name, value in request.app.state.dispatcher_metrics().items():
        lines += [f"# TYPE {name} gauge", f"{name} {value}"]
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
