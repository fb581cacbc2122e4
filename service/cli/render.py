"""Plain-text views of API answers: aligned tables and a job's readable summary."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ascl.config_fields import CONTROL_CHARACTER

_CONTROL_BUT_LAYOUT = re.compile(f"(?![\n\t]){CONTROL_CHARACTER.pattern}")


def visible(text: str, *, lines: bool = False) -> str:
    """Text from the service made safe for a terminal: control characters (escape sequences that
    clear the screen or retitle the window, carriage returns that overwrite a line) are shown as
    escapes; newlines and tabs are kept only where `lines` says the text is laid out in lines (a
    log: Ray's own lines hold tabs)."""
    pattern = _CONTROL_BUT_LAYOUT if lines else CONTROL_CHARACTER
    return pattern.sub(lambda match: repr(match.group())[1:-1], text)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[visible(str(value)) for value in row] for row in rows]
    widths = [max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def age(timestamp: str | None, *, now: datetime | None = None) -> str:
    """'42s', '5m', '3h', '2d' since an RFC 3339 timestamp."""
    if not timestamp:
        return ""
    seconds = ((now or datetime.now(UTC)) - datetime.fromisoformat(timestamp)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def progress(job: dict[str, Any]) -> str:
    shown = job.get("progress") or {}
    if job.get("status") != "RUNNING" or "epoch" not in shown:
        return ""
    epochs = shown.get("epochs")
    step, total = shown.get("step"), shown.get("total_steps")
    percent = f" {100 * step / total:.0f}%" if step and total else ""
    return f"epoch {shown['epoch'] + 1}/{epochs}{percent}" if epochs else f"epoch {shown['epoch'] + 1}{percent}"


def progress_line(job: dict[str, Any]) -> str:
    """One line for following a job: its state, place or epoch, speed, ETA and latest validation."""
    shown = job.get("progress") or {}
    parts = [job["status"], waiting(job) or progress(job) or shown.get("phase", "")]
    if job["status"] == "RUNNING" and shown.get("images_per_s"):
        parts.append(f"{shown['images_per_s']:,.0f} img/s")
    if job["status"] == "RUNNING" and shown.get("eta_s") is not None:
        parts.append(f"ETA {shown['eta_s']:.0f} s")
    val = shown.get("val") or {}
    if "robust_acc" in val:
        parts.append(f"val clean {val.get('clean_acc', float('nan')):.3f} robust {val['robust_acc']:.3f}")
    return " · ".join(part for part in parts if part)


def waiting(job: dict[str, Any]) -> str:
    if job.get("status") != "QUEUED":
        return ""
    position, reason = job.get("queue_position"), job.get("pending_reason") or ""
    return f"#{position} {reason}".strip() if position else reason


JOB_COLUMNS = ("id", "name", "kind", "status", "queue", "position/reason", "progress", "age")


def job_rows(jobs: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            job["id"][:8],
            _short(job["name"], 28),
            job["kind"],
            job["status"],
            job["queue"],
            waiting(job),
            progress(job),
            age(job["created_at"]),
        ]
        for job in jobs
    ]


def job_summary(job: dict[str, Any]) -> str:
    lines = [
        f"{visible(job['name'])}  ({job['kind']} job {job['id']}, owner {job['owner']})",
        f"status     {job['status']}{'  ' + waiting(job) if waiting(job) else ''}",
        f"queue      {job['queue']}, priority {job['priority']}, resources {_resources(job['resources'])}",
        f"created    {job['created_at']}  ({age(job['created_at'])} ago)",
    ]
    if job.get("started_at"):
        lines.append(f"started    {job['started_at']}")
    if job.get("finished_at"):
        lines.append(f"finished   {job['finished_at']}")
    if job.get("attempts"):
        lines.append(f"attempts   {job['attempts']} (infrastructure retries: up to {job['max_infra_retries']})")
    shown = job.get("progress") or {}
    if shown:
        eta = f", ETA {shown['eta_s']:.0f} s" if shown.get("eta_s") is not None and job["status"] == "RUNNING" else ""
        rate = f", {shown['images_per_s']:.0f} img/s" if shown.get("images_per_s") else ""
        where = " ".join(part for part in (shown.get("phase", ""), progress(job)) if part)
        lines.append(f"progress   {where}{rate}{eta}".rstrip())
        if shown.get("val"):
            lines.append("validation " + ", ".join(f"{key} {value:.3f}" for key, value in shown["val"].items()))
    test = (job.get("result") or {}).get("test") or (job.get("result") or {}).get("report") or {}
    if test:
        figures = ("clean_acc", "pgd_acc", "robust_acc")
        lines.append(
            "test       " + ", ".join(f"{key} {test[key]:.3f}" for key in figures if test.get(key) is not None)
        )
    if job.get("error_message"):
        lines.append(f"error      {job['error_class']}: {job['error_message']}")
    if job.get("registered_model_version"):
        lines.append(f"model      models:/{job['model_name']}/{job['registered_model_version']}")
    if job.get("mlflow_run_url"):
        lines.append(f"mlflow     {job['mlflow_run_url']}")
    if job.get("redacted"):
        lines.append("(another user's job: its spec, result and logs are not shared)")
    return visible("\n".join(lines), lines=True)


def _resources(resources: dict[str, Any]) -> str:
    parts = [f"{resources.get('gpus', 0):g} GPU", f"{resources.get('cpus', 1):g} CPU"]
    if resources.get("memory_gb"):
        parts.append(f"{resources['memory_gb']:g} GiB")
    workers = resources.get("workers", 1)
    return ", ".join(parts) + (f" x {workers} workers" if workers and workers > 1 else "")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
