from datetime import timedelta

import aiohttp
import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from pydantic import ValidationError

from hub.core.errors import (
    FailureClass,
    PermanentError,
    SchemaViolationError,
    TransientError,
    UndecodableError,
    classify,
    fingerprint,
    normalise_message,
    stage_of,
)
from hub.core.settings import HubSettings, parse_duration
from hub.core.topics import Subscription, dead_letter_topic, declare, delay_label, retry_topic
from hub.messages.common import TimeWindow


def http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://courier.test/order")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


def aiohttp_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransientError("courier busy"), FailureClass.TRANSIENT),
        (TimeoutError(), FailureClass.TRANSIENT),
        (ConnectionResetError(), FailureClass.TRANSIENT),
        (httpx.ConnectTimeout("slow"), FailureClass.TRANSIENT),
        (http_error(503), FailureClass.TRANSIENT),
        (http_error(429), FailureClass.TRANSIENT),
        (http_error(400), FailureClass.PERMANENT),
        (aiohttp_error(503), FailureClass.TRANSIENT),
        (aiohttp_error(429), FailureClass.TRANSIENT),
        (aiohttp_error(400), FailureClass.PERMANENT),
        (aiohttp.ServerDisconnectedError(), FailureClass.TRANSIENT),
        (
            aiohttp.ClientConnectorError(connection_key=None, os_error=OSError(111, "refused")),  # type: ignore[arg-type]
            FailureClass.TRANSIENT,
        ),
        (KafkaTimeoutError(), FailureClass.TRANSIENT),
        (UndecodableError("bytes"), FailureClass.PERMANENT),
        (KeyError("bug"), FailureClass.PERMANENT),
    ],
)
def test_failures_are_classified_once(error: BaseException, expected: FailureClass) -> None:
    assert classify(error) is expected


def test_a_non_retriable_kafka_error_is_permanent() -> None:
    assert UnknownTopicOrPartitionError.retriable  # documents why this one would retry
    assert classify(PermanentError("x")) is FailureClass.PERMANENT


def test_stages_come_from_the_error_kind() -> None:
    assert stage_of(UndecodableError("x")) == "decode"
    assert stage_of(SchemaViolationError("x")) == "validate"
    with pytest.raises(ValidationError) as caught:
        TimeWindow.model_validate({"start": "x", "end": "y"})
    assert stage_of(caught.value) == "validate"
    assert stage_of(TimeoutError(), "publish") == "publish"


def test_fingerprints_group_failures_that_differ_only_in_ids() -> None:
    one = fingerprint(
        "X", "order 123 of case 0f8fad5b-d9cb-469f-a165-70867728950e failed", "handle"
    )
    two = fingerprint(
        "X", "order 987 of case 7c9e6679-7425-40de-944b-e07fc1f90ae7 failed", "handle"
    )
    assert one == two
    assert one != fingerprint("X", "order 123 failed", "publish")
    assert normalise_message("retry 3 of 10") == "retry # of #"


def test_retry_and_dead_letter_names_carry_the_group() -> None:
    assert retry_topic("aftersales.cases", "dispatch", timedelta(seconds=30)) == (
        "aftersales.cases.dispatch.retry.30s"
    )
    assert dead_letter_topic("aftersales.cases", "dispatch") == "aftersales.cases.dispatch.dlq"
    assert [delay_label(parse_duration(text)) for text in ("10s", "1m", "10m", "2h", "250ms")] == [
        "10s",
        "1m",
        "10m",
        "2h",
        "250ms",
    ]


def test_declared_topics_cover_every_subscription() -> None:
    settings = HubSettings(
        retry_tiers=("10s", "1m"), partitions=6, replication_factor=3, min_insync_replicas=2
    )
    intake = Subscription("intake", ("storefront.aftersales.requests",))
    outputs = ["aftersales.cases", "aftersales.case-status"]
    specs = {spec.name: spec for spec in declare(settings, [intake], outputs)}
    assert {
        "storefront.aftersales.requests.intake.retry.10s",
        "storefront.aftersales.requests.intake.retry.1m",
        "storefront.aftersales.requests.intake.dlq",
        "intake.replay",
        "aftersales.cases",
        "aftersales.case-status",
        "hub.ops.audit",
    } <= set(specs)
    assert specs["aftersales.case-status"].configs["cleanup.policy"] == "compact"
    assert specs["aftersales.cases"].replication_factor == 3
    assert specs["aftersales.cases"].configs["min.insync.replicas"] == "2"
    assert specs["aftersales.cases"].partitions == 6


def test_a_timer_topic_keeps_its_records_past_their_due_time() -> None:
    repair = Subscription("repair", ("aftersales.cases", "repair.timer.168h", "repair.timer.2m"))
    specs = {spec.name: spec for spec in declare(HubSettings(), [repair])}
    week_ms = 7 * 24 * 3600 * 1000
    assert specs["repair.timer.168h"].configs["retention.ms"] == str(2 * week_ms)
    assert specs["repair.timer.2m"].configs["retention.ms"] == str(120_000 + week_ms)
    assert specs["aftersales.cases"].configs["retention.ms"] == str(week_ms)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("HUB_RETRY_TIERS", "5s, 30s")
    settings = HubSettings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.retry_delays == (timedelta(seconds=5), timedelta(seconds=30))
    monkeypatch.setenv("HUB_RETRY_TIERS", "soon")
    with pytest.raises(ValidationError, match="not a duration: 'soon'"):
        HubSettings()


def test_every_setting_is_described() -> None:
    undocumented = [name for name, info in HubSettings.model_fields.items() if not info.description]
    assert undocumented == []
