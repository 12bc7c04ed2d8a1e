"""One place builds how clients reach Kafka; aiokafka and FastStream get the same options."""

from __future__ import annotations

import ssl
from typing import Any

import certifi
import pytest
from faststream.kafka.security import parse_security
from pydantic import SecretStr, ValidationError

from hub.core.connection import faststream_security, kafka_security
from hub.core.settings import HubSettings

CA_FILE = certifi.where()  # any PEM bundle of CAs will do for building a context


def settings(**fields: Any) -> HubSettings:
    return HubSettings(kafka_bootstrap_servers="broker:9093", **fields)


def login(**fields: Any) -> HubSettings:
    return settings(kafka_username="intake", kafka_password=SecretStr("s3cret"), **fields)


def same_in_faststream(options: dict[str, Any], of: HubSettings) -> None:
    """FastStream's broker, given our security object, builds the options aiokafka gets."""
    security = faststream_security(of)
    assert security is not None
    parsed = parse_security(security)
    assert {k: v for k, v in parsed.items() if k != "ssl_context"} == {
        k: v for k, v in options.items() if k != "ssl_context"
    }
    assert isinstance(parsed["ssl_context"], ssl.SSLContext) == ("ssl_context" in options)


def test_plaintext_by_default_and_sasl_plaintext_with_a_login() -> None:
    assert kafka_security(settings()) == {"security_protocol": "PLAINTEXT"}
    assert faststream_security(settings()) is None
    options = kafka_security(login())
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "intake",
        "sasl_plain_password": "s3cret",
    }
    same_in_faststream(options, login())


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_sasl_ssl_verifies_the_broker_with_the_configured_ca(mechanism: str) -> None:
    secured = login(kafka_security_protocol="SASL_SSL", kafka_ssl_ca_file=CA_FILE,
                    kafka_sasl_mechanism=mechanism)  # fmt: skip
    options = kafka_security(secured)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    # Only the configured CAs are trusted, not the system's as well.
    assert context.cert_store_stats()["x509_ca"] == len(
        ssl.create_default_context(cafile=CA_FILE).get_ca_certs()
    )
    same_in_faststream(options, secured)


def test_ssl_without_login_and_the_host_name_check_turned_off() -> None:
    tls = settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname="false")
    options = kafka_security(tls)
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].check_hostname is False
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # the CA still counts
    same_in_faststream(options, tls)


def test_inconsistent_security_settings_are_refused_at_start_up(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="SASL_SSL needs HUB_KAFKA_USERNAME"):
        settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="protocol SSL sends no login"):
        login(kafka_security_protocol="SSL")
    with pytest.raises(ValidationError, match="HUB_KAFKA_SSL_KEY_FILE needs"):
        settings(kafka_security_protocol="SSL", kafka_ssl_key_file=CA_FILE)
    with pytest.raises(ValidationError, match="kafka_ssl_ca_file"):
        settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        settings(kafka_security_protocol="TLS")


def test_the_environment_spells_it_as_kafka_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HUB_KAFKA_USERNAME", "intake")
    monkeypatch.setenv("HUB_KAFKA_PASSWORD", "s3cret")
    monkeypatch.setenv("HUB_KAFKA_SSL_CA_FILE", CA_FILE)
    monkeypatch.setenv("HUB_KAFKA_SSL_CHECK_HOSTNAME", "false")
    options = kafka_security(HubSettings())
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_context"].check_hostname is False
    assert "s3cret" not in repr(HubSettings())
