"""CloudEvents conformance, judged by the CloudEvents Python SDK rather than by the hub itself.

Inputs built by the SDK (binary and structured mode) go through the real kernel
(`Pipeline.process_batch` with the SQLite store); every output is read back with the SDK.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import TYPE_CHECKING, Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from hub.bootstrap import Adapter, declarations
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import CASES, COURIER_OBSERVATIONS, STOREFRONT_REQUESTS, dead_letter_topic
from hub.messages import CATALOGUE
from hub.messages.cases import PickupRequestedV1
from lab.samples import sample_request_v2
from tracker.service import SCORES_GROUP

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from hub.core.handler import Service
    from hub.core.outbound import OutRecord

FORMAT = JSONFormat()
CORRELATION = "storefront-session-42"
_RUNS = itertools.count()


class CollectingSink:
    """Keeps what the pipeline produces."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send(self, records: Sequence[OutRecord]) -> None:
        self.records.extend(records)


def pure_services(settings: HubSettings) -> dict[str, Service]:
    """Every declared group whose handlers run without a partner's API or a provider."""
    return {d.group: d.service for d in declarations(settings) if d.adapter is Adapter.NONE}


def sdk_request(number: int = 1, category: str | None = None) -> CloudEvent:
    """A storefront request as another team would build it with the SDK."""
    request = sample_request_v2(number)
    if category is not None:
        item = request.item.model_copy(update={"category": category})
        request = request.model_copy(update={"item": item})
    return CloudEvent(
        attributes={
            "id": f"sdk-{request.request_id}",
            "source": "urn:storefront:sdk",
            "type": request.ce_type(),
            "time": request.requested_at,
            "subject": request.request_id,
            "dataschema": request.dataschema(),
            "datacontenttype": "application/json",
            "correlationid": CORRELATION,
            "partitionkey": request.request_id,
        },
        data=request.model_dump(mode="json"),
    )


def as_record(topic: str, message: KafkaMessage, offset: int = 0) -> KafkaRecord:
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return KafkaRecord(topic, 0, offset, 0, key, message.value, tuple(message.headers.items()))


def from_output(record: OutRecord) -> CloudEvent:
    event = from_binary(KafkaMessage(dict(record.headers), record.key, record.value or b""), FORMAT)
    assert isinstance(event, CloudEvent)
    return event


async def run(
    service: Service, records: list[KafkaRecord], tmp_path: Path
) -> tuple[tuple[Outcome, ...], list[OutRecord]]:
    store = SqliteStateStore(tmp_path / f"{service.group}-{next(_RUNS)}.db")
    await store.open()
    sink = CollectingSink()
    try:
        pipeline = Pipeline(
            service, registry=CATALOGUE, store=store, sink=sink, settings=HubSettings()
        )
        result = await pipeline.process_batch(records)
    finally:
        await store.close()
    return result.outcomes, sink.records


async def test_an_sdk_binary_event_is_accepted_by_intake_as_is(tmp_path: Path) -> None:
    intake = pure_services(HubSettings())["intake"]
    message = to_binary(sdk_request(), FORMAT)
    outcomes, outputs = await run(intake, [as_record(STOREFRONT_REQUESTS, message)], tmp_path)
    assert outcomes == (Outcome.PROCESSED,)
    (opened,) = outputs
    assert opened.topic == CASES
    assert from_output(opened).get_extension("correlationid") == CORRELATION


async def test_a_structured_event_is_decoded_the_same_as_binary_mode(tmp_path: Path) -> None:
    intake = pure_services(HubSettings())["intake"]
    event = sdk_request()
    binary, structured = to_binary(event, FORMAT), to_structured(event, FORMAT)
    assert dict(structured.headers)["content-type"].startswith(b"application/cloudevents+json")
    _, from_binary_mode = await run(intake, [as_record(STOREFRONT_REQUESTS, binary)], tmp_path)
    outcomes, from_structured_mode = await run(
        intake, [as_record(STOREFRONT_REQUESTS, structured)], tmp_path
    )
    assert outcomes == (Outcome.PROCESSED,)
    # Same event, same outputs, byte for byte (ids, trace and time derive from the input).
    assert from_structured_mode == from_binary_mode


async def test_structured_data_base64_is_accepted(tmp_path: Path) -> None:
    intake = pure_services(HubSettings())["intake"]
    structured = json.loads(to_structured(sdk_request(), FORMAT).value)
    data = structured.pop("data")
    structured["data_base64"] = base64.b64encode(json.dumps(data).encode()).decode()
    message = KafkaMessage(
        {"content-type": b"application/cloudevents+json; charset=utf-8"},
        None,
        json.dumps(structured).encode(),
    )
    outcomes, _ = await run(intake, [as_record(STOREFRONT_REQUESTS, message)], tmp_path)
    assert outcomes == (Outcome.PROCESSED,)


def _structured_value(**changes: Any) -> bytes:
    event = json.loads(to_structured(sdk_request(), FORMAT).value)
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v != "<drop>"}).encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "structured CloudEvent is not JSON"),
        (b"[1, 2]", "structured CloudEvent is JSON list, not an object"),
        (
            _structured_value(id="<drop>"),
            "structured CloudEvent: missing CloudEvents headers: ce_id",
        ),
        (_structured_value(specversion="0.3"), "unsupported ce_specversion '0.3'"),
        (_structured_value(time="yesterday"), "ce_time is not RFC 3339"),
        (_structured_value(source={"a": 1}), "structured CloudEvent attribute source is JSON dict"),
        (_structured_value(data="<drop>"), "structured CloudEvent has no data"),
        (
            _structured_value(data="<drop>", data_base64="!!"),
            "structured CloudEvent data_base64 is invalid",
        ),
        (_structured_value(datacontenttype="text/xml"), "data is 'text/xml', not JSON"),
    ],
)
async def test_a_malformed_structured_event_is_dead_lettered_at_decode(
    tmp_path: Path, value: bytes, message: str
) -> None:
    intake = pure_services(HubSettings())["intake"]
    record = KafkaRecord(
        STOREFRONT_REQUESTS,
        0,
        7,
        0,
        b"k",
        value,
        (("content-type", b"application/cloudevents+json"),),
    )
    outcomes, outputs = await run(intake, [record], tmp_path)
    assert outcomes == (Outcome.DEAD_LETTERED,)
    (letter,) = outputs
    headers = dict(letter.headers)
    assert letter.topic == dead_letter_topic(STOREFRONT_REQUESTS, "intake")
    assert letter.value == value  # the partner's bytes, untouched, for a person to read
    assert headers["x-hub-error-stage"] == b"decode"
    assert message in headers["x-hub-error-message"].decode()


async def test_an_output_of_every_service_carries_every_attribute_for_the_sdk(
    tmp_path: Path,
) -> None:
    services = pure_services(HubSettings())
    emitted: dict[str, list[tuple[CloudEvent, OutRecord]]] = {group: [] for group in services}
    # A picked-up phone and a large appliance a technician visits: between them, every pure
    # group answers a new case.
    for request in (sdk_request(1), sdk_request(2, category="large_appliance")):
        message = to_binary(request, FORMAT)
        _, (opened,) = await run(
            services["intake"], [as_record(STOREFRONT_REQUESTS, message)], tmp_path
        )
        emitted["intake"].append((request, opened))
        case_opened = KafkaRecord(CASES, 0, 0, 0, opened.key, opened.value, opened.headers)
        for group in sorted(services.keys() - {"intake", SCORES_GROUP}):
            outcomes, outputs = await run(services[group], [case_opened], tmp_path)
            assert outcomes == (Outcome.PROCESSED,), group
            emitted[group] += [(from_output(opened), output) for output in outputs]
    # The courier scorer reads what the tracker observes of a courier: the pickup order offered.
    requested = next(
        output
        for _, output in emitted["dispatch"]
        if from_output(output).get_type() == PickupRequestedV1.ce_type()
    )
    offered = KafkaRecord(CASES, 0, 1, 0, requested.key, requested.value, requested.headers)
    _, tracked = await run(services["tracker"], [offered], tmp_path)
    observed = next(o for o in tracked if o.topic == COURIER_OBSERVATIONS)
    observation = KafkaRecord(
        COURIER_OBSERVATIONS, 0, 0, 0, observed.key, observed.value, observed.headers
    )
    outcomes, outputs = await run(services[SCORES_GROUP], [observation], tmp_path)
    assert outcomes == (Outcome.PROCESSED,)
    emitted[SCORES_GROUP] += [(from_output(observed), output) for output in outputs]
    assert {group for group, outputs in emitted.items() if outputs} == set(services)
    for group, caused in emitted.items():
        for cause, output in caused:
            event = from_output(output)
            model = CATALOGUE.model_for(event.get_type())
            time = event.get_time()
            assert event.get_specversion() == "1.0"
            assert event.get_id()
            assert event.get_source() == services[group].source
            assert time is not None
            assert time.tzinfo is not None
            assert event.get_subject()
            assert event.get_dataschema() == model.dataschema()
            assert event.get_datacontenttype() == "application/json"
            assert event.get_extension("correlationid") == CORRELATION, group
            assert event.get_extension("causationid") == cause.get_id(), group
            assert output.key is not None
            assert event.get_extension("partitionkey") == output.key.decode()
            assert isinstance(event.get_data(), dict)
            model.model_validate(event.get_data())
