"""On a secured broker: SCRAM users, ACLs as code, bad credentials refused clearly."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from pydantic import SecretStr
from structlog.testing import capture_logs

from hub.access import OPERATIONS_USER, STOREFRONT_USER, all_bindings, partner_user
from hub.bootstrap import all_topics
from hub.core.acls import apply_acls
from hub.core.connection import KafkaAuthenticationError, kafka_security, scram_options
from hub.core.outbound import event_record
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.settings import HubSettings
from hub.core.topics import CASES, STOREFRONT_REQUESTS, apply_topics, courier_orders_topic
from hub.messages import CATALOGUE
from intake.domain import case_id_for
from intake.service import build_service
from lab.harness.bootstrap import Broker, secured_kafka_for_tests
from lab.harness.kafka import ADMIN_USER
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

USERS = ("intake", "dispatch", partner_user("jd"), partner_user("yd"), STOREFRONT_USER,
         OPERATIONS_USER, "ingress")  # fmt: skip


class SecuredCluster:
    """A broker of its own with one SCRAM user per principal and the hub's ACLs applied."""

    def __init__(self, kafka: Broker, passwords: dict[str, str]) -> None:
        self.kafka = kafka
        self.passwords = passwords
        self.bootstrap = kafka.bootstrap_servers

    def sasl(self, name: str) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            **scram_options(name, self.passwords[name]),
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredCluster]:
    passwords = {name: secrets.token_hex(12) for name in (ADMIN_USER, *USERS)}
    with secured_kafka_for_tests(tmp_path_factory.mktemp("secured"), passwords) as kafka:
        yield SecuredCluster(kafka, passwords)


@pytest.fixture
def settings_of(secured: SecuredCluster, tmp_path: Path) -> Callable[[str], HubSettings]:
    """Settings of one user: default retry tiers, as the declared topics and ACLs have them."""

    def settings(name: str) -> HubSettings:
        return HubSettings(
            kafka_bootstrap_servers=secured.bootstrap,
            kafka_username=name,
            kafka_password=SecretStr(secured.passwords[name]),
            state_dir=str(tmp_path / name),
        )

    return settings


@pytest.fixture(scope="module")
def declared(secured: SecuredCluster) -> int:
    """Topics and ACLs applied as the admin, twice: the second run must change nothing."""
    settings = HubSettings(kafka_bootstrap_servers=secured.bootstrap)
    admin = secured.sasl(ADMIN_USER)
    security = {key: value for key, value in admin.items() if key != "bootstrap_servers"}

    async def apply() -> tuple[int, int]:
        report = await apply_topics(secured.bootstrap, all_topics(settings), security)
        assert report.created
        first = await apply_acls(admin, all_bindings(settings))
        again = await apply_topics(secured.bootstrap, all_topics(settings), security)
        assert not again.created
        assert not again.reconfigured
        return first, await apply_acls(admin, all_bindings(settings))

    first, second = asyncio.run(apply())
    assert first == second == len(all_bindings(settings))
    return first


async def test_a_courier_reads_only_its_own_orders_and_writes_only_its_own_events(
    secured: SecuredCluster, declared: int
) -> None:
    assert declared > 0
    order = b'{"order": "jd-only"}'
    dispatch = AIOKafkaProducer(**secured.sasl("dispatch"))
    await dispatch.start()
    try:
        for code in ("jd", "yd"):
            await dispatch.send_and_wait(courier_orders_topic(code), order, key=code.encode())
    finally:
        await dispatch.stop()

    jd = partner_user("jd")
    own = AIOKafkaConsumer(courier_orders_topic("jd"), group_id=jd, auto_offset_reset="earliest",
                           **secured.sasl(jd))  # fmt: skip
    await own.start()
    try:
        batches = await own.getmany(timeout_ms=10_000)
        assert [r.value for batch in batches.values() for r in batch] == [order]
    finally:
        await own.stop()

    foreign = AIOKafkaConsumer(courier_orders_topic("yd"), group_id=jd, **secured.sasl(jd))
    with pytest.raises(TopicAuthorizationFailedError, match=r"courier\.yd\.pickup-orders"):
        await foreign.start()
    await foreign.stop()

    # Its own topic under another partner's group: the group is not its to join.
    borrowed = AIOKafkaConsumer(courier_orders_topic("jd"), group_id=partner_user("yd"),
                                auto_offset_reset="earliest", **secured.sasl(jd))  # fmt: skip
    with pytest.raises(GroupAuthorizationFailedError, match="partner-yd"):
        await borrowed.start()
    await borrowed.stop()

    producer = AIOKafkaProducer(**secured.sasl(jd))
    await producer.start()
    try:
        await producer.send_and_wait("courier.jd.events", b"{}")
        with pytest.raises(TopicAuthorizationFailedError, match=r"courier\.yd\.events"):
            await producer.send_and_wait("courier.yd.events", b"{}")
    finally:
        await producer.stop()


async def test_a_service_runs_on_its_own_rights_and_cannot_write_a_topic_it_does_not_own(
    secured: SecuredCluster, declared: int, settings_of: Callable[[str], HubSettings]
) -> None:
    assert declared > 0
    request = sample_request_v2(4242)
    storefront = KafkaSink(settings_of(STOREFRONT_USER), client_id="storefront")
    await storefront.start()
    try:
        await storefront.send(
            [event_record(STOREFRONT_REQUESTS, request, key=request.request_id, source="urn:sf")]
        )
    finally:
        await storefront.stop()

    intake = settings_of("intake")
    async with ServiceRuntime(build_service(intake), intake, registry=CATALOGUE):
        consumer = AIOKafkaConsumer(CASES, auto_offset_reset="earliest",
                                    **secured.sasl(ADMIN_USER))  # fmt: skip
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                keys: list[bytes | None] = []
                while case_id_for(request.request_id).encode() not in keys:
                    batches = await consumer.getmany(timeout_ms=500)
                    keys += [r.key for batch in batches.values() for r in batch]
        finally:
            await consumer.stop()

    sink = KafkaSink(intake, client_id="intake-overreach")
    await sink.start()
    try:
        overreach = event_record(courier_orders_topic("jd"), request, key="x", source="urn:intake")
        with pytest.raises(TopicAuthorizationFailedError, match=r"courier\.jd\.pickup-orders"):
            await sink.send([overreach])
    finally:
        await sink.stop()


async def test_the_front_door_may_write_storefront_requests_and_nothing_else(
    secured: SecuredCluster, declared: int, settings_of: Callable[[str], HubSettings]
) -> None:
    assert declared > 0
    request = sample_request_v2(4343)
    # The producer the ingress runs: acks=all, idempotent, on the ingress user's rights alone.
    sink = KafkaSink(settings_of("ingress"), client_id="hub-ingress")
    await sink.start()
    try:
        await sink.send(
            [event_record(STOREFRONT_REQUESTS, request, key=request.request_id, source="urn:be")]
        )
        overreach = event_record(CASES, request, key="x", source="urn:be")
        with pytest.raises(TopicAuthorizationFailedError, match=r"aftersales\.cases"):
            await sink.send([overreach])
    finally:
        await sink.stop()
    # It consumes nothing: no topic to read, no group to join.
    reader = AIOKafkaConsumer(STOREFRONT_REQUESTS, **secured.sasl("ingress"))
    await reader.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError, match=r"storefront\.aftersales"):
            await reader.getmany(timeout_ms=5000)
    finally:
        await reader.stop()
    member = AIOKafkaConsumer(STOREFRONT_REQUESTS, group_id="ingress", **secured.sasl("ingress"))
    with pytest.raises(GroupAuthorizationFailedError, match="ingress"):
        await member.start()
    await member.stop()


async def test_a_wrong_password_is_refused_with_a_clear_error_in_our_logs(
    secured: SecuredCluster, make_settings: Callable[..., HubSettings]
) -> None:
    wrong = "not-" + secured.passwords["intake"]
    settings = make_settings(
        kafka_bootstrap_servers=secured.bootstrap,
        kafka_username="intake",
        kafka_password=SecretStr(wrong),
    )
    assert kafka_security(settings)["sasl_plain_username"] == "intake"
    sink = KafkaSink(settings, client_id="wrong-password")
    with capture_logs() as logs, pytest.raises(KafkaAuthenticationError) as refused:
        await sink.start()
    assert str(refused.value) == (
        f"Kafka at {secured.bootstrap} refused user 'intake' (SCRAM-SHA-512): check "
        "HUB_KAFKA_USERNAME and HUB_KAFKA_PASSWORD"
    )
    (entry,) = [e for e in logs if e["event"] == "kafka_authentication_refused"]
    assert entry["log_level"] == "error"
    assert entry["user"] == "intake"
    assert wrong not in repr(logs)
    assert wrong not in repr(settings)
