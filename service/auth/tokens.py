"""API tokens: `ascl_<id>_<secret>`, shown once. Only the SHA-256 of the secret is stored (the secret
is 256 random bits, so a fast hash is as strong as a slow one); the id finds the row, and the
comparison is constant-time. Tokens expire and can be revoked. Functions take a Session and never
commit: the caller owns the transaction."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Lock

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.auth.principal import Principal, Role
from service.db import read_scope
from service.db.models import ApiToken
from service.jobs.errors import NotFound, Unauthenticated
from service.jobs.store import as_utc, now

TOKEN_PATTERN = re.compile(r"^ascl_(?P<id>[0-9a-f]{24})_(?P<secret>[A-Za-z0-9_-]{43})$")
LAST_USED_EVERY = timedelta(minutes=5)  # last_used_at is a hint; writing it on every call would serialise reads


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    subject: str
    role: Role
    name: str
    created_by: str
    kind: str = "user"
    groups: tuple[str, ...] = ()
    expires_in: timedelta | None = None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(session: Session, new: NewToken) -> tuple[ApiToken, str]:
    """The stored row and the token itself, which is never stored and never shown again."""
    token_id, secret = secrets.token_hex(12), secrets.token_urlsafe(32)
    created = now()
    row = ApiToken(
        id=token_id,
        secret_hash=_hash(secret),
        subject=new.subject,
        role=new.role.value,
        kind=new.kind,
        groups=list(new.groups),
        name=new.name,
        created_by=new.created_by,
        created_at=created,
        expires_at=created + new.expires_in if new.expires_in is not None else None,
    )
    session.add(row)
    _forget_ended(session, new.subject)
    session.flush()
    return row, f"ascl_{token_id}_{secret}"


KEPT_ENDED = 20  # a subject's revoked or expired tokens kept for their list: the latest to end


def _forget_ended(session: Session, subject: str) -> None:
    """Only live tokens count against a subject's limit: without this, a loop of short-lived (or
    revoked) ones grew the table, and every list of it, without bound."""
    ended = or_(ApiToken.revoked_at.is_not(None), and_(ApiToken.expires_at.is_not(None), ApiToken.expires_at <= now()))
    oldest = (
        select(ApiToken.id)
        .where(ApiToken.subject == subject, ended)
        .order_by(func.coalesce(ApiToken.revoked_at, ApiToken.expires_at).desc(), ApiToken.id)
        .offset(KEPT_ENDED)
    )
    session.execute(delete(ApiToken).where(ApiToken.id.in_(oldest)))


def verify(session: Session, token: str) -> Principal:
    match = TOKEN_PATTERN.match(token)
    row = session.get(ApiToken, match["id"]) if match else None
    if match is None or row is None or not secrets.compare_digest(row.secret_hash, _hash(match["secret"])):
        raise Unauthenticated("the token is not valid")
    moment = now()
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.id} was revoked")
    if row.expires_at is not None and as_utc(row.expires_at) <= moment:
        raise Unauthenticated(f"token {row.id} expired at {as_utc(row.expires_at).isoformat()}")
    return Principal(subject=row.subject, role=Role(row.role), groups=tuple(row.groups or ()), kind=row.kind)


def note_use(session: Session, token_id: str, moment: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=moment))


def live_count(session: Session, subject: str) -> int:
    """The subject's tokens that still work: neither revoked nor expired."""
    live = and_(
        ApiToken.subject == subject,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now()),
    )
    return int(session.execute(select(func.count()).where(live)).scalar_one())


def listed(session: Session, *, subject: str | None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.created_at.desc())
    if subject is not None:
        query = query.where(ApiToken.subject == subject)
    return list(session.execute(query).scalars())


def get(session: Session, token_id: str) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}")
    return row


def revoke(session: Session, token_id: str) -> ApiToken:
    row = get(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = now()
    return row


@dataclass(frozen=True, slots=True)
class Verified:
    principal: Principal
    token_id: str
    use_due: datetime | None  # the moment to record as the token's last use, when that is due


class TokenVerifier:
    """Verifies tokens with a short cache, so a request costs no database round trip most of the
    time; a revocation made through this process takes effect at once, elsewhere within `ttl_s`.
    Verifying only reads (on SQLite it never waits for the writers: measured, a re-verification
    that took the write lock queued for seconds behind a stream of submissions); recording the
    token's last use, every `LAST_USED_EVERY`, is left to the caller's writer."""

    def __init__(self, sessions: sessionmaker[Session], *, ttl_s: float) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal, datetime | None]] = {}
        self._lock = Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified less than `ttl_s` ago (and not expired since)."""
        with self._lock:
            cached = self._cache.get(token)
        fresh = cached is not None and time.monotonic() - cached[0] < self.ttl_s
        if cached is not None and fresh and (cached[2] is None or cached[2] > now()):
            return cached[1]
        return None

    def verified(self, token: str) -> Verified:
        """Checks the token against the database (whether or not it is cached)."""
        match = TOKEN_PATTERN.match(token)
        if match is None:
            raise Unauthenticated("the token is not valid")
        with read_scope(self.sessions) as session:
            found = verify(session, token)
            row = session.get(ApiToken, match["id"])
            if row is None:  # ended and deleted in the instant since (a new token of its subject's)
                raise Unauthenticated("the token is not valid")
            expires, last_used = as_utc(row.expires_at), as_utc(row.last_used_at)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: a flood of distinct valid tokens cannot grow it
                self._cache.clear()
            self._cache[token] = (time.monotonic(), found, expires)
        moment = now()
        due = last_used is None or moment - last_used > LAST_USED_EVERY
        return Verified(found, match["id"], moment if due else None)

    def forget(self, token_id: str) -> None:
        with self._lock:
            for token in [t for t in self._cache if t.startswith(f"ascl_{token_id}_")]:
                del self._cache[token]
