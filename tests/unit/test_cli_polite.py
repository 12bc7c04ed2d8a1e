"""The `hub` executable as a user meets it: one line and a documented exit code per failure."""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HUB = Path(sys.executable).parent / "hub"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hub(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("HUB_", "KAFKA_"))
    }
    environ |= {
        "HUB_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "HUB_STATE_DIR": str(tmp_path / "state"),
        # Resource warnings ("Unclosed AIOKafkaProducer") are ignored by default: show them.
        "PYTHONWARNINGS": "always",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own executable
        [str(HUB), *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )


def assert_polite(result: subprocess.CompletedProcess[str]) -> str:
    """Nothing on stdout, exactly one line on stderr, no traceback or warning; returns it."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    for noise in ("Traceback", "Unclosed", "Warning", "╭"):
        assert noise not in result.stderr
    return lines[0]


def test_version(tmp_path: Path) -> None:
    result = hub("--version", tmp_path=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "hub 0.1.0"


def test_a_bad_time_is_a_bad_argument_said_in_one_line(tmp_path: Path) -> None:
    result = hub("dlq", "replay", "--since", "yesterday", "--reason", "x", tmp_path=tmp_path)
    assert result.returncode == 2
    line = assert_polite(result)
    assert line.startswith("hub dlq replay: ")
    assert "'yesterday'" in line


def test_an_unknown_option_and_service_exit_2(tmp_path: Path) -> None:
    unknown_option = hub("topics", "apply", "--bogus", tmp_path=tmp_path)
    assert unknown_option.returncode == 2
    assert "--bogus" in assert_polite(unknown_option)
    unknown_service = hub("run", "nope", tmp_path=tmp_path)
    assert unknown_service.returncode == 2
    assert "unknown service 'nope'" in assert_polite(unknown_service)


def test_an_unreachable_broker_is_named_in_one_line_with_exit_4(tmp_path: Path) -> None:
    for command in (("dlq", "list"), ("topics", "apply", "--dry-run"), ("dlq", "groups")):
        result = hub(*command, tmp_path=tmp_path, HUB_LOG_FORMAT="console")
        assert result.returncode == 4, (command, result.stderr)
        line = assert_polite(result)
        assert line.startswith("hub: cannot reach Kafka at 127.0.0.1:"), line


def test_contradictory_or_invalid_settings_are_one_line_with_exit_2(tmp_path: Path) -> None:
    secret = secrets.token_hex(8)
    login_over_ssl = hub("topics", "apply", "--dry-run", tmp_path=tmp_path,
                         HUB_KAFKA_SECURITY_PROTOCOL="SSL", HUB_KAFKA_USERNAME="intake",
                         HUB_KAFKA_PASSWORD=secret)  # fmt: skip
    assert login_over_ssl.returncode == 2
    assert assert_polite(login_over_ssl) == (
        "hub: invalid settings: HUB_KAFKA_USERNAME is set but the Kafka security protocol SSL "
        "sends no login: use SASL_PLAINTEXT or SASL_SSL"
    )
    assert secret not in login_over_ssl.stderr
    unknown = hub("dlq", "list", tmp_path=tmp_path, HUB_KAFKA_SECURITY_PROTOCOL="TLS")
    assert unknown.returncode == 2
    assert assert_polite(unknown).startswith(
        "hub: invalid settings: kafka_security_protocol ('TLS'): Input should be 'PLAINTEXT', "
    )


@pytest.mark.parametrize("service", ["intake", "ingress"])
def test_hub_run_that_cannot_start_says_why_in_json_lines_only(
    tmp_path: Path, service: str
) -> None:
    result = hub("run", service, tmp_path=tmp_path, HUB_INGRESS_PORT="0")
    assert result.returncode == 4
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert result.stdout == ""
    assert events[-1]["event"] == "service_failed"
    assert events[-1]["dependency"] == "kafka"
    assert events[-1]["exit_code"] == 4
    assert "Unclosed" not in result.stderr


@pytest.mark.parametrize("service", ["intake", "ingress"])
def test_hub_run_with_an_unreachable_store_exits_5(tmp_path: Path, service: str) -> None:
    url = f"postgresql://hub@127.0.0.1:{closed_port()}/hub"
    result = hub("run", service, tmp_path=tmp_path, HUB_DATABASE_URL=url, HUB_INGRESS_PORT="0")
    assert result.returncode == 5
    failed = json.loads(result.stderr.splitlines()[-1])
    assert failed["event"] == "service_failed"
    assert failed["dependency"] == "store"
    assert "PostgreSQL at 127.0.0.1" in failed["error"]


def test_acls_dry_run_lists_bindings_as_json_without_a_cluster(tmp_path: Path) -> None:
    result = hub("acls", "apply", "--dry-run", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    principals = {row["principal"] for row in report["bindings"]}
    assert "User:intake" in principals
