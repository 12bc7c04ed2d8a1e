"""Who is signed in: scrypt password hashes, server-side sessions, CSRF tokens, roles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.console.settings import Operator, Role

SCHEME = "scrypt"
# Interactive-login strength from the scrypt paper (16 MiB, ~50 ms): slow to guess, quick to use.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
TOKEN_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=256 * n * r * p
    )


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$key`: the form operators put in `HUB_CONSOLE_OPERATORS`."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches `encoded`; a malformed hash matches nothing."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != SCHEME:
            return False
        found = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(found, _unb64(key))
    except ValueError:
        return False


# Compared against when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = hash_password("no one", salt=b"\0" * SALT_BYTES)


def authenticate(operators: dict[str, Operator], name: str, password: str) -> Role | None:
    """The role of `name` when `password` is theirs, else None."""
    known = operators.get(name)
    encoded = known.password_hash.get_secret_value() if known else _DUMMY_HASH
    if verify_password(password, encoded) and known is not None:
        return known.role
    return None


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in person: their name, role and the CSRF token their forms carry."""

    token: str
    name: str
    role: Role
    csrf: str
    expires_at: float

    @property
    def may_act(self) -> bool:
        """Whether this person may change anything (replay, edit, purge)."""
        return self.role == "operator"


@dataclass(slots=True)
class Sessions:
    """Sessions held by the console process; a restart signs everyone out, by design."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _by_token: dict[str, Session] = field(default_factory=dict)

    def open(self, name: str, role: Role) -> Session:
        """A new session with fresh random tokens."""
        self._expire()
        session = Session(
            token=secrets.token_urlsafe(TOKEN_BYTES),
            name=name,
            role=role,
            csrf=secrets.token_urlsafe(TOKEN_BYTES),
            expires_at=self.clock() + self.ttl_s,
        )
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token`, if any."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None or session.expires_at <= self.clock():
            self._by_token.pop(token, None)
            return None
        return session

    def close(self, token: str | None) -> None:
        """Sign out."""
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items() if s.expires_at <= now]:
            del self._by_token[token]
