"""Authentication for the routes: `Authorization: Bearer <token>`, either one of our API tokens or,
where configured, a JWT of the site's identity provider. Cached token checks cost no thread-pool
hop, so the async submission path stays async."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from service.auth.oidc import OidcVerifier
from service.auth.principal import Principal
from service.auth.tokens import TOKEN_PATTERN, TokenVerifier
from service.jobs.errors import Unauthenticated


class Authenticator:
    def __init__(self, tokens: TokenVerifier, oidc: OidcVerifier | None) -> None:
        self.tokens = tokens
        self.oidc = oidc

    async def principal(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated()
        token = token.strip()
        if TOKEN_PATTERN.match(token):
            cached = self.tokens.cached(token)
            return cached if cached is not None else await run_in_threadpool(self.tokens.principal, token)
        if self.oidc is None:
            raise Unauthenticated("the token is not an API token of this service")
        return await run_in_threadpool(self.oidc.principal, token)


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header(max_length=4096, description="Bearer <token>")] = None,
) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(authorization)


CurrentUser = Annotated[Principal, Depends(current_principal)]
