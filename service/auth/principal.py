"""An authenticated identity and the access policy: admins do anything; users submit and manage
their own jobs, sweeps and models; viewers only read. Other users' job details (spec, result,
logs, metrics, events, checkpoints) are readable only where the operator shares them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.jobs.errors import Forbidden

# a user's or service account's name, at most 100: e-mail addresses and identity providers' subjects
# (Auth0's 'auth0|5f7c...', GitHub's 'repo:org/app:ref:...') fit; spaces and control characters do not
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+|:/'-]*$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+@/-]*$"  # a group or a tag
LABEL_LENGTH = 64


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"
    VIEWER = "viewer"


RANK = {Role.VIEWER: 0, Role.USER: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    subject: str  # the user or service account name; the actor in every job event
    role: Role
    groups: tuple[str, ...] = ()
    kind: str = "user"  # user | service
    via: str = "token"  # token | oidc

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


def require_role(principal: Principal, role: Role, action: str) -> None:
    if not principal.at_least(role):
        raise Forbidden(f"{principal.subject} ({principal.role}) may not {action}: it needs the {role} role")


def require_owner(principal: Principal, owner: str, what: str) -> None:
    """Only the owner (or an admin) changes a job, sweep or token."""
    require_role(principal, Role.USER, f"change {what}")
    if not principal.is_admin and principal.subject != owner:
        raise Forbidden(f"{what} belongs to {owner}; only its owner or an admin may change it")


def may_read_details(principal: Principal, owner: str, *, shared: bool) -> bool:
    return principal.is_admin or principal.subject == owner or shared


def require_details(principal: Principal, owner: str, *, shared: bool, what: str) -> None:
    if not may_read_details(principal, owner, shared=shared):
        raise Forbidden(f"{what} belongs to {owner}; its details are not shared on this service")


def may_write_model(principal: Principal, owner: str, group: str | None) -> bool:
    """Adding versions and moving aliases: the name's creator, its group, or an admin."""
    return principal.is_admin or principal.subject == owner or (group is not None and group in principal.groups)


def may_read_model(principal: Principal, owner: str, group: str | None, *, shared: bool) -> bool:
    """Evaluating a model reads its checkpoint: its writers, or anyone where the operator shares."""
    return may_write_model(principal, owner, group) or shared
