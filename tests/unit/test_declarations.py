"""A service's declaration routes what its handlers emit; anything else is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from hub.core.errors import UndeclaredOutputError
from hub.core.handler import Decision, Emit, Route, routes
from hub.core.outbound import event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import courier_orders_topic, dead_letter_topic
from hub.messages.courier import PickupCancelRequestedV1

if TYPE_CHECKING:
    from pathlib import Path

INPUT, OUTPUT = "test.declared.in", "test.declared.out"


class CollectingSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, bytes]]] = []

    async def send(self, records: object) -> None:
        for record in records:  # type: ignore[attr-defined]
            self.records.append((record.topic, dict(record.headers)))


def test_a_per_partner_route_reaches_only_the_partners_it_declares() -> None:
    route = Route.per_partner(courier_orders_topic, ["jd", "sf"])
    cancel = PickupCancelRequestedV1(order_id="o1", case_id="AS1", reason="test")
    assert route.topics == ("courier.jd.pickup-orders", "courier.sf.pickup-orders")
    assert route.topic_for(Emit("c", cancel, partner="sf")) == "courier.sf.pickup-orders"
    with pytest.raises(UndeclaredOutputError, match=r"to undeclared courier\.ems\.pickup-orders"):
        route.topic_for(Emit("c", cancel, partner="ems"))
    with pytest.raises(UndeclaredOutputError, match="names no partner"):
        route.topic_for(Emit("c", cancel))


def test_outputs_are_every_topic_the_routes_may_choose() -> None:
    service = probe_service("g", INPUT, OUTPUT, FaultPlan())
    assert service.outputs == (OUTPUT,)
    wider = {**service.emits, **routes(Route.to("test.other"), PickupCancelRequestedV1)}
    assert replace(service, emits=wider).outputs == (OUTPUT, "test.other")


async def test_an_event_the_declaration_does_not_route_is_dead_lettered_not_sent(
    tmp_path: Path,
) -> None:
    plan = FaultPlan()
    service = probe_service("g", INPUT, OUTPUT, plan)
    stray = PickupCancelRequestedV1(order_id="o1", case_id="AS1", reason="test")

    def handle(_incoming: object) -> Decision:
        return Decision(emits=(Emit("stray", stray),))

    service = replace(service, handlers={ProbeV1.event_type: handle})
    store = SqliteStateStore(tmp_path / "g.db")
    await store.open()
    sink = CollectingSink()
    try:
        pipeline = Pipeline(
            service, registry=REGISTRY, store=store, sink=sink, settings=HubSettings()
        )
        out = event_record(INPUT, ProbeV1(seq=1), key="k", source="urn:t", event_id="e1")
        record = KafkaRecord(INPUT, 0, 0, 0, out.key, out.value, out.headers)
        result = await pipeline.process_batch([record])
    finally:
        await store.close()
    assert result.outcomes == (Outcome.DEAD_LETTERED,)
    ((topic, headers),) = sink.records
    assert topic == dead_letter_topic(INPUT, "g")
    assert headers["x-hub-error-stage"] == b"publish"
    assert (
        headers["x-hub-error-message"]
        == b"g declares no output for courier.pickup.cancel-requested"
    )
    assert ProbeDoneV1.event_type in service.emits  # the declared output is still routed
