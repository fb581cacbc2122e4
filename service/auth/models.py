"""Registered model names belong to the user who first trained under them (or to a group named
then): only they, their group or an admin add versions or move aliases, and evaluating a model (which
reads its checkpoint) needs the same right unless the operator shares models."""

from __future__ import annotations

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth.principal import Principal, may_read_model, may_write_model
from service.db.group_commit import BATCH_HINTS
from service.db.models import ModelOwner
from service.jobs.errors import Forbidden, InvalidSpec
from service.jobs.store import now


class NameClaimRace(Exception):
    """Another request claimed the same new model name in the same instant; retried alone, the
    ownership check then answers it."""


def check_writable(session: Session, name: str, principal: Principal, *, group: str | None) -> bool:
    """Raises Forbidden unless the principal may add versions under `name`; True when the name is new.
    Reads only, so a refusal happens before the request writes anything."""
    if group is not None and group not in principal.groups and not principal.is_admin:
        raise InvalidSpec("model_group", f"{principal.subject} is not in group {group!r}")
    owner = _owner(session, name)
    if owner is None:
        return True
    if not may_write_model(principal, owner.owner, owner.group):
        raise Forbidden(f"model name {name!r} belongs to {owner.owner}; train under a name of your own")
    return False


def claim(session: Session, name: str, principal: Principal, *, group: str | None) -> None:
    """Record a new name as the principal's (and `group`'s)."""
    row = ModelOwner(name=name, owner=principal.subject, group=group, created_at=now())
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as error:
        raise NameClaimRace(name) from error
    known = session.info.get(_KNOWN)
    if known is not None:
        known[name] = row


def _owner(session: Session, name: str) -> ModelOwner | None:
    """`session.get`, but in a group commit whose units are hinted with the model names they train,
    one query reads the whole batch's names (kept here: the session holds its rows weakly); a name
    absent then stays absent unless this transaction claims it."""
    known: dict[str, ModelOwner | None] | None = session.info.get(_KNOWN)
    if known is None:
        if _KNOWN not in session.info:
            for moment in ("after_commit", "after_rollback"):
                event.listen(session, moment, _forget_known)
        hinted = {hint["model_name"] for hint in session.info.get(BATCH_HINTS, ()) if "model_name" in hint}
        names = sorted({name, *hinted})
        known = session.info[_KNOWN] = dict.fromkeys(names)
        rows = session.execute(select(ModelOwner).where(ModelOwner.name.in_(names))).scalars()
        known |= {row.name: row for row in rows}
    if name not in known:
        return session.get(ModelOwner, name)
    return known[name]


_KNOWN = "models.known_owners"


def _forget_known(session: Session) -> None:
    session.info[_KNOWN] = None


def require_readable(session: Session, name: str, principal: Principal, *, shared: bool) -> None:
    owner = session.get(ModelOwner, name)
    if owner is not None and not may_read_model(principal, owner.owner, owner.group, shared=shared):
        raise Forbidden(f"model {name!r} belongs to {owner.owner} and is not shared on this service")
