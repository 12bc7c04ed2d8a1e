"""Bearer tokens of platform backends: stored as SHA-256, each allowed only its own sources."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from ingress.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ingress.settings import Backend

TOKEN_BYTES = 32
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aftersales-hub"'}


def token_digest(token: str) -> str:
    """The SHA-256 of a token, hex: what the settings hold.

    Unsalted on purpose: a token is 256 random bits, so there is no dictionary to defend against,
    and a lookup must not cost a key-derivation function per request.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token to hand to one backend."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class Tokens:
    """Who a bearer token belongs to, and which sources that backend may post."""

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self._backends = dict(backends)

    def __len__(self) -> int:
        return len(self._backends)

    def authenticate(self, authorization: str | None) -> str:
        """The backend an `Authorization: Bearer` header names; 401 without one, 403 if unknown."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401, "Unauthorized", "send Authorization: Bearer <your token>", headers=_CHALLENGE
            )
        digest = token_digest(token.strip())
        found: str | None = None
        for name, backend in self._backends.items():
            # Every entry compared, each in constant time: timing says nothing about the table.
            if hmac.compare_digest(digest, backend.token_sha256):
                found = name
        if found is None:
            raise Problem(403, "Forbidden", "the token is not valid")
        return found

    def check_source(self, backend: str, source: str) -> None:
        """403 unless `backend` may post events of `source`."""
        if source not in self._backends[backend].sources:
            raise Problem(
                403, "Forbidden", f"backend {backend!r} may not send events of ce_source {source!r}"
            )
