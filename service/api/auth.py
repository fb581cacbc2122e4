"""Authentication for the routes: `Authorization: Bearer <token>`, either one of our API tokens or,
where configured, a JWT of the site's identity provider. Cached token checks cost no thread-pool
hop, so the async submission path stays async. A token's last use is written by the app's one writer
(the group commit), never by the request's thread: on SQLite that thread would queue for the write
lock behind the submissions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from service.api.limits import Slots
from service.auth.oidc import OidcVerifier
from service.auth.principal import Principal
from service.auth.tokens import TOKEN_PATTERN, TokenVerifier, note_use
from service.db.group_commit import GroupCommit
from service.jobs.errors import Unauthenticated

logger = logging.getLogger(__name__)


class Authenticator:
    def __init__(self, tokens: TokenVerifier, oidc: OidcVerifier | None, *, writer: GroupCommit) -> None:
        self.tokens = tokens
        self.oidc = oidc
        self.writer = writer

    async def principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated()
        token = token.strip()
        if TOKEN_PATTERN.match(token):
            cached = self.tokens.cached(token)
            if cached is not None:
                return cached
            verified = await run_in_threadpool(self.tokens.verified, token)
            if verified.use_due is not None:
                await self._note_use(verified.token_id, verified.use_due)
            return verified.principal
        if self.oidc is None:
            raise Unauthenticated("the token is not an API token of this service")
        return await run_in_threadpool(self.oidc.principal, token)

    async def _note_use(self, token_id: str, moment: datetime) -> None:
        """A hint for the token's owner: failing to write it never refuses a valid token."""
        try:
            await self.writer.run(partial(note_use, token_id=token_id, moment=moment))
        except Exception:
            logger.warning("auth.last_use_not_recorded token_id=%s", token_id, exc_info=True)


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header(max_length=4096, description="Bearer <token>")] = None,
) -> AsyncIterator[Principal]:
    """The caller, holding one of its requests-in-progress slots until the route has answered: one
    user's flood is refused (429) before it fills the thread pool or the database's connections.
    Admins (operators, automation) are not limited. A route that streams gives its slot back when
    the stream starts (`release_request_slot`): streams are bounded on their own."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.principal(authorization)
    if principal.is_admin:
        yield principal
        return
    slots: Slots = request.app.state.requests_in_progress
    slots.take(principal.subject)
    request.state.request_slot = principal.subject
    try:
        yield principal
    finally:
        release_request_slot(request)


def release_request_slot(request: Request) -> None:
    """Give the caller's request slot back now (once, however often it is called)."""
    subject = getattr(request.state, "request_slot", None)
    if subject is not None:
        request.state.request_slot = None
        request.app.state.requests_in_progress.give_back(subject)


CurrentUser = Annotated[Principal, Depends(current_principal)]
