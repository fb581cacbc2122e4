"""Registered model names belong to the user who first trained under them (or to a group named
then): only they, their group or an admin add versions or move aliases, and evaluating a model (which
reads its checkpoint) needs the same right unless the operator shares models."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth.principal import Principal, may_read_model, may_write_model
from service.db.group_commit import batch_added, batch_read
from service.db.models import ModelOwner
from service.jobs.errors import Forbidden, InvalidSpec, InvalidTransition
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
    batch_added(session, _KNOWN, name, row)


def check_and_claim(session: Session, name: str, principal: Principal, *, group: str | None) -> None:
    """`check_writable`, and a new name claimed, for a request outside the group commit (which
    retries a NameClaimRace alone): there, a claim raced by another request's is a conflict to send
    again."""
    if not check_writable(session, name, principal, group=group):
        return
    try:
        claim(session, name, principal, group=group)
    except NameClaimRace:
        raise InvalidTransition(
            f"model name {name!r} was claimed by another request at this instant; send the request again"
        ) from None


def _owner(session: Session, name: str) -> ModelOwner | None:
    """`session.get`, read once for the whole batch of a group commit whose units are hinted with the
    model names they train; a name absent then stays absent unless this transaction claims it."""
    return batch_read(session, _KNOWN, name, hint="model_name", read=lambda names: _owners(session, names))


def _owners(session: Session, names: list[str]) -> dict[str, ModelOwner]:
    return {row.name: row for row in session.execute(_OWNERS_NAMED, {"names": names}).scalars()}


_OWNERS_NAMED = select(ModelOwner).where(ModelOwner.name.in_(bindparam("names", expanding=True)))


_KNOWN = "models.known_owners"


def require_readable(session: Session, name: str, principal: Principal, *, shared: bool) -> None:
    """A name no job of this service trained (registered in MLflow by other means) is an admin's."""
    owner = session.get(ModelOwner, name)
    if owner is None and not principal.is_admin:
        raise Forbidden(f"model {name!r} was not trained on this service: only an admin may evaluate it")
    if owner is not None and not may_read_model(principal, owner.owner, owner.group, shared=shared):
        raise Forbidden(f"model {name!r} belongs to {owner.owner} and is not shared on this service")
