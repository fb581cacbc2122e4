"""The first admin token of a service: `ascl serve` keeps it in its data directory (mode 0600) and
records that file for local clients (service/credentials.py)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service.auth import tokens
from service.auth.principal import Role
from service.credentials import write_private
from service.db import session_scope
from service.jobs.errors import Unauthenticated


def ensure_admin_token(sessions: sessionmaker[Session], path: Path) -> str:
    """The admin token kept at `path`: the one already there if it still verifies, else a new one
    (first start, or the old one was revoked or expired)."""
    if path.is_file():
        token = path.read_text().strip()
        try:
            with session_scope(sessions) as session:
                if tokens.verify(session, token).role == Role.ADMIN:
                    return token
        except Unauthenticated:
            pass
    with session_scope(sessions) as session:
        _, token = tokens.create(
            session, tokens.NewToken(subject="admin", role=Role.ADMIN, name="ascl serve admin", created_by="ascl serve")
        )
    write_private(path, token)
    return token
