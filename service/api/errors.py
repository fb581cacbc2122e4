"""Domain exceptions → HTTP statuses, with one body shape: {error, detail, field}."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ascl.errors import ConfigError
from service.api.schemas import ErrorBody
from service.jobs.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidSpec,
    InvalidTransition,
    NotFound,
    StaleAttempt,
    TooMany,
    Unauthenticated,
)

# documented on every /api/v1 route: what any of them may answer besides its success
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429)
}

STATUS: dict[type[Exception], int] = {
    ConfigError: 422,  # a stored config that today's rules refuse (a retry, an evaluation of it)
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    InvalidTransition: 409,
    IdempotencyConflict: 409,
    StaleAttempt: 409,
    InvalidSpec: 422,
    TooMany: 429,
}


def install_error_handlers(app: FastAPI) -> None:
    for error_type, status in STATUS.items():
        app.add_exception_handler(error_type, _handler(status))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def _handler(status: int):  # type: ignore[no-untyped-def]
    async def handle(_: Request, error: Exception) -> JSONResponse:
        field = getattr(error, "field", None)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = {"error": type(error).__name__, "detail": str(error), "field": field}
        return JSONResponse(body, status_code=status, headers=headers)

    return handle


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    """Starlette's own answers (a body that is not JSON, an unknown route, a wrong method) in the
    same shape as every other error."""
    assert isinstance(error, StarletteHTTPException)
    body = {"error": HTTPStatus(error.status_code).phrase.replace(" ", ""), "detail": error.detail, "field": None}
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


_PLAIN_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # a field's name, or a dict key shown as sent


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    first_field = None
    for item in error.errors():
        # the field's name, not its position: 'status', not 'status.0'
        parts = [str(part) for part in item["loc"] if part not in ("body", "query", "path", "header")]
        about = ""
        if "[key]" in parts:  # a dict's key was refused: the dict is the field (the key is the sender's text)
            parts, about = parts[: parts.index("[key]") - 1], "a key: "
        shown = [part if _PLAIN_PART.fullmatch(part) else "<key>" for part in parts if not part.isdigit()]
        location = ".".join(shown) or "request"
        first_field = first_field or location
        problems.append(f"{location}: {about}{item['msg']}")
    return JSONResponse(
        {"error": "InvalidRequest", "detail": "; ".join(problems), "field": first_field}, status_code=422
    )
