"""Job-store errors. Each docstring is the default message; the API maps them to HTTP codes."""

from __future__ import annotations


class JobError(Exception):
    """Job error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class NotFound(JobError):
    """Nothing with this id."""


class JobNotFound(NotFound):
    """No job with this id."""


class InvalidTransition(JobError):
    """The job's state does not allow this operation."""


class IdempotencyConflict(JobError):
    """This Idempotency-Key was already used with a different request body."""


class StaleAttempt(JobError):
    """This attempt is not the job's current attempt, or the job is finished: stop."""


class InvalidSpec(JobError):
    """The job specification is invalid."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class TooMany(JobError):
    """Too many held at once (log streams, requests in progress): try again once one has ended."""


class Forbidden(JobError):
    """This identity may not do that."""


class Unauthenticated(JobError):
    """No valid credentials: send 'Authorization: Bearer <token>'."""
