"""API tokens over HTTP: create (shown once), list, revoke; and who the caller is. Users manage
their own tokens (at most their own role); admins manage everyone's, service accounts included."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.auth import CurrentUser
from service.api.deps import Sessions
from service.api.schemas import Label, Text, Timestamp
from service.auth import tokens
from service.auth.principal import USER_PATTERN, Principal, Role, require_role
from service.db import session_scope
from service.db.models import ApiToken
from service.jobs.errors import Forbidden, InvalidSpec

router = APIRouter()
Subject = Annotated[str, Field(min_length=1, max_length=100, pattern=USER_PATTERN)]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]
MAX_EXPIRY_S = 5 * 365 * 86400


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "laptop", "expires_in_s": 2592000}, {"subject": "ci", "kind": "service"}]
        },
    )

    name: Text = Field("api token", description="what the token is for")
    subject: Subject | None = Field(None, description="whom it authenticates (default: you; others: admins only)")
    role: Role | None = Field(None, description="default: your role; never above it")
    kind: Literal["user", "service"] = "user"
    groups: list[Label] = Field(default_factory=list, max_length=20)
    expires_in_s: int | None = Field(90 * 86400, gt=0, le=MAX_EXPIRY_S, description="null: never expires")


class TokenRead(BaseModel):
    id: str
    name: str
    subject: str
    role: str
    kind: str
    groups: list[str]
    created_by: str
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenRead:
        return cls(
            id=row.id,
            name=row.name,
            subject=row.subject,
            role=row.role,
            kind=row.kind,
            groups=row.groups or [],
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )


class TokenCreated(TokenRead):
    token: str = Field(description="the token itself: shown this once, stored only hashed")


class WhoAmI(BaseModel):
    subject: str
    role: str
    groups: list[str]
    kind: str
    via: str


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: CurrentUser) -> WhoAmI:
    return WhoAmI(
        subject=principal.subject,
        role=principal.role,
        groups=list(principal.groups),
        kind=principal.kind,
        via=principal.via,
    )


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, request: Request, sessions: Sessions, principal: CurrentUser) -> TokenCreated:
    subject = body.subject or principal.subject
    role = body.role or principal.role
    if subject != principal.subject or body.kind == "service" or body.groups:
        require_role(principal, Role.ADMIN, "create tokens for others, service accounts or groups")
    if not principal.at_least(role):
        require_role(principal, role, f"create a token with the {role} role")
    new = tokens.NewToken(
        subject=subject,
        role=role,
        name=body.name,
        created_by=principal.subject,
        kind=body.kind,
        groups=tuple(body.groups) or (principal.groups if subject == principal.subject else ()),
        expires_in=timedelta(seconds=body.expires_in_s) if body.expires_in_s else None,
    )
    limit = request.app.state.settings.max_tokens_per_user
    with session_scope(sessions) as session:
        if tokens.live_count(session, subject) >= limit:
            raise InvalidSpec("subject", f"{subject} already has {limit} live tokens; revoke one first")
        row, secret = tokens.create(session, new)
        return TokenCreated(**TokenRead.of(row).model_dump(), token=secret)


@router.get("/tokens", response_model=list[TokenRead])
def list_tokens(sessions: Sessions, principal: CurrentUser, subject: Subject | None = None) -> list[TokenRead]:
    """Your tokens; an admin sees everyone's (or one subject's)."""
    scope = subject if principal.is_admin else principal.subject
    with session_scope(sessions) as session:
        return [TokenRead.of(row) for row in tokens.listed(session, subject=scope)]


@router.delete("/tokens/{token_id}", response_model=TokenRead)
def revoke_token(token_id: TokenId, request: Request, sessions: Sessions, principal: CurrentUser) -> TokenRead:
    with session_scope(sessions) as session:
        _require_token_owner(principal, tokens.get(session, token_id))
        row = tokens.revoke(session, token_id)
        request.app.state.authenticator.tokens.forget(token_id)
        return TokenRead.of(row)


def _require_token_owner(principal: Principal, row: ApiToken) -> None:
    """Anyone may revoke their own tokens, viewers included; admins revoke any."""
    if not principal.is_admin and principal.subject != row.subject:
        raise Forbidden(f"token {row.id} belongs to {row.subject}; only its owner or an admin may revoke it")
