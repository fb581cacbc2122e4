"""An optional OIDC/JWT verifier (PyJWT), for sites with an identity provider: a bearer token that
is not one of our API tokens is checked as a JWT signed by the issuer's keys (JWKS, fetched and
cached by PyJWT), for the configured issuer and audience. The subject, role and groups come from
configurable claims; a token without a recognised role gets the 'user' role."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from service.auth.principal import LABEL_LENGTH, LABEL_PATTERN, USER_PATTERN, Principal, Role
from service.jobs.errors import Unauthenticated

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str | None = None  # default: the issuer's discovery document says
    subject_claim: str = "sub"
    roles_claim: str = "roles"
    groups_claim: str = "groups"
    admin_role: str = "admin"  # the claim value that means our admin role
    viewer_role: str = "viewer"


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._keys: jwt.PyJWKClient | None = None

    def _jwks(self) -> jwt.PyJWKClient:
        if self._keys is None:
            url = self.config.jwks_url
            if url is None:
                discovery = f"{self.config.issuer.rstrip('/')}/.well-known/openid-configuration"
                url = str(httpx.get(discovery, timeout=10).raise_for_status().json()["jwks_uri"])
            self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return self._keys

    def principal(self, token: str) -> Principal:
        try:
            key = self._jwks().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, httpx.HTTPError) as error:
            raise Unauthenticated(f"the token is not a valid token of {self.config.issuer}: {error}") from None
        subject = claims.get(self.config.subject_claim)
        if not isinstance(subject, str) or len(subject) > 100 or not re.fullmatch(USER_PATTERN, subject):
            # it becomes job owners, event actors and filters: the alphabet of every other user name
            raise Unauthenticated(
                f"the token's {self.config.subject_claim!r} claim names no user (at most 100 ASCII letters, digits"
                " and _ . @ + | : / ' -; ASCL_OIDC_SUBJECT_CLAIM chooses another claim)"
            )
        roles = _strings(claims.get(self.config.roles_claim))
        role = (
            Role.ADMIN
            if self.config.admin_role in roles
            else Role.VIEWER
            if self.config.viewer_role in roles
            else Role.USER
        )
        # a group that no token could name (an LDAP DN, say) cannot own a model here: it is left out
        groups = tuple(g for g in _strings(claims.get(self.config.groups_claim)) if _is_label(g))
        return Principal(subject=subject, role=role, groups=groups, kind="user", via="oidc")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _is_label(text: str) -> bool:
    return len(text) <= LABEL_LENGTH and re.fullmatch(LABEL_PATTERN, text) is not None
