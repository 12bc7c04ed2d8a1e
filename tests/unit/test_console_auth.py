"""The console's sign-in: scrypt hashes, sessions that expire, roles from settings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import SecretStr

from hub.console.auth import Sessions, authenticate, hash_password, verify_password
from hub.console.settings import ConsoleSettings, Operator

if TYPE_CHECKING:
    import pytest


def test_a_hash_verifies_its_password_only_and_is_salted() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horse!", encoded)
    assert hash_password("correct horse") != encoded  # a fresh salt each time
    assert not verify_password("x", "not-a-hash")
    assert not verify_password("x", "bcrypt$1$2$3$4$5")


def test_authenticate_gives_the_configured_role() -> None:
    operators = {
        "alice": Operator(password_hash=SecretStr(hash_password("a-pass")), role="operator"),
        "victor": Operator(password_hash=SecretStr(hash_password("v-pass"))),
    }
    assert authenticate(operators, "alice", "a-pass") == "operator"
    assert authenticate(operators, "victor", "v-pass") == "viewer"
    assert authenticate(operators, "alice", "v-pass") is None
    assert authenticate(operators, "mallory", "a-pass") is None


def test_sessions_expire_and_close() -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60, clock=lambda: now[0])
    session = sessions.open("alice", "operator")
    assert session.may_act
    assert session.csrf != session.token
    assert sessions.get(session.token) == session
    assert sessions.get("forged") is None
    now[0] += 61
    assert sessions.get(session.token) is None
    again = sessions.open("victor", "viewer")
    assert not again.may_act
    sessions.close(again.token)
    assert sessions.get(again.token) is None


def test_operators_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = hash_password("a-pass")
    operators = {"alice": {"password_hash": encoded, "role": "operator"}}
    monkeypatch.setenv("HUB_CONSOLE_OPERATORS", json.dumps(operators))
    config = ConsoleSettings()
    assert config.operators["alice"].role == "operator"
    assert config.operators["alice"].password_hash.get_secret_value() == encoded
    assert encoded not in repr(config)  # a hash is a secret too
