"""Over TLS: SASL_SSL with SCRAM end to end, mutual TLS, and every TLS slip refused clearly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr
from structlog.testing import capture_logs

from hub.bootstrap import all_topics
from hub.core.connection import KafkaTlsError, kafka_security
from hub.core.outbound import event_record
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.settings import HubSettings
from hub.core.topics import CASES, STOREFRONT_REQUESTS, TopicSpec, apply_topics
from hub.messages import CATALOGUE
from intake.domain import case_id_for
from intake.service import build_service
from lab.harness.certs import CertificateAuthority
from lab.harness.kafka import ADMIN_USER, HOST, LocalKafka
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

pytestmark = pytest.mark.integration

HUB = Path(sys.executable).parent / "hub"
# A loopback address the broker's certificate does not name (it names localhost and 127.0.0.1).
UNNAMED_HOST = "127.0.0.2"


class TlsCluster:
    """A secured broker with a SASL_SSL listener, and the CA that signed its certificate."""

    def __init__(self, kafka: LocalKafka, password: str) -> None:
        self.kafka = kafka
        self.password = password
        ca = kafka.ca
        assert ca is not None
        self.ca_file = ca.certificate
        self.bootstrap = kafka.tls_bootstrap_servers

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a `hub` command reaching this broker over SASL_SSL as admin."""
        return {
            "HUB_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HUB_KAFKA_USERNAME": ADMIN_USER,
            "HUB_KAFKA_PASSWORD": self.password,
            "HUB_KAFKA_SSL_CA_FILE": str(self.ca_file),
            **overrides,
        }


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    password = secrets.token_hex(12)
    base_dir = tmp_path_factory.mktemp("tls")
    with LocalKafka(base_dir=base_dir, scram_users={ADMIN_USER: password}, tls=True) as kafka:
        yield TlsCluster(kafka, password)


@pytest.fixture(scope="module")
def declared(tls_cluster: TlsCluster, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The hub's topics, created over SASL_SSL by `apply_topics` (the admin client)."""
    settings = HubSettings(
        kafka_bootstrap_servers=tls_cluster.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_username=ADMIN_USER,
        kafka_password=SecretStr(tls_cluster.password),
        kafka_ssl_ca_file=tls_cluster.ca_file,
        state_dir=str(tmp_path_factory.mktemp("declare")),
    )
    report = asyncio.run(
        apply_topics(tls_cluster.bootstrap, all_topics(settings), kafka_security(settings))
    )
    return report.created


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PEM of a CA that signed nothing the broker shows."""
    return CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), "other-ca").certificate


@pytest.fixture
def settings_for(tls_cluster: TlsCluster, tmp_path: Path) -> Callable[..., HubSettings]:
    """Settings reaching the TLS listener as admin over SASL_SSL, with `overrides`."""

    def settings(**overrides: Any) -> HubSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": tls_cluster.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_username": ADMIN_USER,
            "kafka_password": SecretStr(tls_cluster.password),
            "kafka_ssl_ca_file": tls_cluster.ca_file,
            "state_dir": str(tmp_path / "state"),
            "log_format": "console",
        }
        return HubSettings.model_validate(values | overrides)

    return settings


def hub(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "KAFKA_"))}
    environ |= {"HUB_STATE_DIR": str(tmp_path / "state"), "PYTHONWARNINGS": "always", **env}
    return subprocess.run(  # noqa: S603 - our own executable
        [str(HUB), *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )


async def test_a_case_travels_over_sasl_ssl_through_the_hubs_own_clients(
    declared: list[str], settings_for: Callable[..., HubSettings]
) -> None:
    assert {CASES, STOREFRONT_REQUESTS} <= set(declared)
    settings = settings_for()
    assert kafka_security(settings)["security_protocol"] == "SASL_SSL"

    request = sample_request_v2(7001)
    storefront = KafkaSink(settings, client_id="storefront-tls")
    await storefront.start()
    try:
        await storefront.send(
            [event_record(STOREFRONT_REQUESTS, request, key=request.request_id, source="urn:sf")]
        )
    finally:
        await storefront.stop()

    # The intake service as `hub run intake` runs it: a FastStream subscriber and the kernel's
    # producer, both over SASL_SSL.
    async with ServiceRuntime(build_service(settings), settings, registry=CATALOGUE):
        consumer = AIOKafkaConsumer(
            CASES,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            **kafka_security(settings),
        )
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                keys: list[bytes | None] = []
                while case_id_for(request.request_id).encode() not in keys:
                    batches = await consumer.getmany(timeout_ms=500)
                    keys += [r.key for batch in batches.values() for r in batch]
        finally:
            await consumer.stop()


def test_hub_topics_apply_over_tls_and_a_wrong_ca_or_protocol_refused_in_one_line(
    tls_cluster: TlsCluster, declared: list[str], wrong_ca: Path, tmp_path: Path
) -> None:
    trusted = hub("topics", "apply", "--dry-run", env=tls_cluster.env(), tmp_path=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.splitlines()[-1] == f"{len(declared)} topics unchanged"

    refused = hub("topics", "apply", "--dry-run", tmp_path=tmp_path,
                  env=tls_cluster.env(HUB_KAFKA_SSL_CA_FILE=str(wrong_ca)))  # fmt: skip
    assert refused.returncode == 4, refused.stderr
    assert refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"hub: Kafka at {tls_cluster.bootstrap}: TLS handshake with "), line
    assert "certificate verify failed" in line
    assert line.endswith(
        "check HUB_KAFKA_SSL_CA_FILE (the CA that signed the broker's certificate)"
    ), line
    for noise in ("Traceback", "Unclosed", "Warning"):
        assert noise not in refused.stderr

    # The usual slip: the TLS listener's address with the protocol of a listener in clear.
    in_clear = hub("topics", "apply", "--dry-run", tmp_path=tmp_path,
                   env=tls_cluster.env(HUB_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"))  # fmt: skip
    assert in_clear.returncode == 4, in_clear.stderr
    assert in_clear.stderr.splitlines() == [
        (
            f"hub: Kafka at {tls_cluster.bootstrap}: {tls_cluster.bootstrap} hung up on a request "
            "in clear (SASL_PLAINTEXT): if it is a TLS listener, set HUB_KAFKA_SECURITY_PROTOCOL "
            "to SSL or SASL_SSL"
        )
    ]


@contextlib.asynccontextmanager
async def forwarded(port: int) -> AsyncIterator[str]:
    """`UNNAMED_HOST:port'` relaying bytes to HOST:port, TLS untouched: a name the cert lacks."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(HOST, port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer),
                             return_exceptions=True)  # fmt: skip

    server = await asyncio.start_server(relay, UNNAMED_HOST, 0)
    async with server:
        yield f"{UNNAMED_HOST}:{server.sockets[0].getsockname()[1]}"


async def test_a_broker_reached_by_a_name_its_certificate_lacks_is_refused_unless_allowed(
    tls_cluster: TlsCluster, declared: list[str], settings_for: Callable[..., HubSettings]
) -> None:
    assert STOREFRONT_REQUESTS in declared
    port = tls_cluster.kafka.specs[0].tls_port
    assert port is not None
    async with forwarded(port) as address:
        checked = KafkaSink(settings_for(kafka_bootstrap_servers=address), client_id="checked")
        with capture_logs() as logs, pytest.raises(KafkaTlsError) as refused:
            await checked.start()
        assert f"TLS handshake with {address} failed" in str(refused.value)
        assert f"IP address mismatch, certificate is not valid for '{UNNAMED_HOST}'" in str(
            refused.value
        )
        assert "HUB_KAFKA_SSL_CHECK_HOSTNAME=false" in str(refused.value)
        (entry,) = [e for e in logs if e["event"] == "kafka_tls_failed"]
        assert entry["log_level"] == "error"
        assert entry["broker"] == address

        # The opt-out: still encrypted, still this CA only, any name accepted.
        unchecked = settings_for(kafka_bootstrap_servers=address, kafka_ssl_check_hostname=False)
        sink = KafkaSink(unchecked, client_id="unchecked")
        await sink.start()
        try:
            request = sample_request_v2(7002)
            await sink.send([event_record(STOREFRONT_REQUESTS, request,
                                          key=request.request_id, source="urn:sf")])  # fmt: skip
        finally:
            await sink.stop()


@pytest.fixture(scope="module")
def mutual_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker whose SSL listener requires a client certificate from its CA."""
    base_dir = tmp_path_factory.mktemp("mtls")
    with LocalKafka(base_dir=base_dir, tls=True, tls_client_auth=True) as kafka:
        yield kafka


async def test_mutual_tls_with_a_client_certificate_and_a_clear_refusal_without(
    mutual_tls: LocalKafka, tmp_path: Path
) -> None:
    ca = mutual_tls.ca
    assert ca is not None
    client = ca.issue_client("hub-ops")

    def settings(**overrides: Any) -> HubSettings:
        return HubSettings(
            kafka_bootstrap_servers=mutual_tls.tls_bootstrap_servers,
            kafka_security_protocol="SSL",
            kafka_ssl_ca_file=ca.certificate,
            state_dir=str(tmp_path / "state"),
            **overrides,
        )

    shown = settings(kafka_ssl_cert_file=client.certificate, kafka_ssl_key_file=client.key)
    topic = "tls.mutual"
    await apply_topics(shown.kafka_bootstrap_servers, [TopicSpec(topic, 1, 1)],
                       kafka_security(shown))  # fmt: skip
    request = sample_request_v2(7003)
    sink = KafkaSink(shown, client_id="mutual")
    await sink.start()
    try:
        await sink.send([event_record(topic, request, key=request.request_id, source="urn:sf")])
    finally:
        await sink.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=shown.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", **kafka_security(shown))  # fmt: skip
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
        keys = [r.key for batch in batches.values() for r in batch]
    finally:
        await consumer.stop()
    assert keys == [request.request_id.encode()]

    anonymous = KafkaSink(settings(), client_id="anonymous")
    with pytest.raises(KafkaTlsError) as refused:
        await anonymous.start()
    assert str(refused.value) == (
        f"Kafka at {mutual_tls.tls_bootstrap_servers}: TLS handshake with "
        f"{mutual_tls.tls_bootstrap_servers} failed (the broker hung up on the first request): "
        "if the listener requires a client certificate, set HUB_KAFKA_SSL_CERT_FILE and "
        "HUB_KAFKA_SSL_KEY_FILE"
    )
