"""What this service allows, so users see the operator's limits before a submission is refused."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.auth import CurrentUser

router = APIRouter()


class ServiceLimits(BaseModel):
    spec: dict[str, float] = Field(description="the largest value each experiment field may take")
    max_body_bytes: int
    body_deadline_s: float = Field(description="a request body must arrive within this; else 408")
    max_queued_per_user: int
    max_sweep_trials: int
    max_running_sweeps_per_user: int
    requests_per_user: int = Field(description="requests in progress at once; more get 429")
    log_streams_per_user: int
    log_streams_total: int = Field(description="open log streams of all users together")
    log_stream_max_s: float = Field(description="a log stream ends after this; clients reopen it where it stopped")
    max_tokens_per_user: int = Field(description="live API tokens of one subject")
    default_max_runtime_s: int | None = Field(description="what a job that sets no max_runtime_s gets")
    user_priority_limit: int = Field(description="|priority| a non-admin may ask for")


@router.get("/limits", response_model=ServiceLimits)
def limits(request: Request, _: CurrentUser) -> ServiceLimits:
    settings = request.app.state.settings
    return ServiceLimits(
        spec=dict(settings.spec_limits_checker.maxima),
        max_body_bytes=settings.max_body_bytes,
        body_deadline_s=settings.body_deadline_s,
        max_queued_per_user=settings.max_queued_per_user,
        max_sweep_trials=settings.max_sweep_trials,
        max_running_sweeps_per_user=settings.max_running_sweeps_per_user,
        requests_per_user=settings.requests_per_user,
        log_streams_per_user=settings.log_streams_per_user,
        log_streams_total=settings.log_streams_total,
        log_stream_max_s=settings.log_stream_max_s,
        max_tokens_per_user=settings.max_tokens_per_user,
        default_max_runtime_s=settings.default_max_runtime_s,
        user_priority_limit=settings.user_priority_limit,
    )
