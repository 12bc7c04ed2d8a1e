"""A service's declaration routes what its handlers emit; anything else is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service

from dispatch.partners import load_partners
from hub import bootstrap
from hub.access import all_bindings
from hub.bootstrap import all_topics, declaration_of, declarations
from hub.core.acls import ResourceType, user
from hub.core.errors import UndeclaredOutputError
from hub.core.handler import Decision, Emit, Route, routes
from hub.core.outbound import event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import (
    courier_orders_topic,
    dead_letter_topic,
    parking_topic,
    replay_topic,
    retry_topic,
)
from hub.messages.courier import PickupCancelRequestedV1

if TYPE_CHECKING:
    from pathlib import Path

    from dispatch.partners import PartnerTable
    from hub.core.handler import Service

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

    def handle(_event: object, _state: object, _at: object) -> Decision[Any]:
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


# --- everything that needs the topology reads it from the declarations -------------------------
def granted(group: str, operation: str, table: PartnerTable | None = None) -> set[str]:
    return {
        b.resource_name
        for b in all_bindings(HubSettings(), table)
        if b.principal == user(group)
        and b.resource_type is ResourceType.TOPIC
        and b.operation.name == operation
    }


def test_each_group_may_read_and_write_exactly_what_its_declaration_says() -> None:
    settings = HubSettings()
    for declaration in declarations(settings):
        service, group = declaration.service, declaration.group
        if not declaration.consumes:
            assert granted(group, "READ") == set(), group
            assert granted(group, "WRITE") == set(declaration.outputs), group
            continue
        retries = {
            retry_topic(topic, group, delay)
            for topic in service.all_inputs
            for delay in settings.retry_delays
        }
        own = {dead_letter_topic(t, group) for t in service.all_inputs}
        tables = {table.topic for table in service.tables}  # read whole, without a group
        assert granted(group, "READ") == {
            *service.all_inputs,
            *retries,
            replay_topic(group),
            *tables,
        }
        assert granted(group, "WRITE") == {
            *declaration.outputs,
            *retries,
            *own,
            *service.timer_topics,
            parking_topic(group),
        }, group


def test_an_output_added_to_a_declaration_reaches_topics_and_acls_with_no_other_edit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = HubSettings()
    new_topic = "aftersales.insurance-claims"
    assert new_topic not in {spec.name for spec in all_topics(settings)}
    assert new_topic not in granted("repair", "WRITE")

    import repair.service  # noqa: PLC0415 - the one place that declares repair's outputs

    declared = repair.service.build_service

    def with_claims(*args: object, **kwargs: object) -> Service:
        service = declared(*args, **kwargs)  # type: ignore[arg-type]
        claim = routes(Route.to(new_topic), PickupCancelRequestedV1)
        return replace(service, emits={**service.emits, **claim})

    monkeypatch.setattr(bootstrap, "build_repair", with_claims)
    assert new_topic in {spec.name for spec in all_topics(settings)}
    assert new_topic in granted("repair", "WRITE")
    assert new_topic not in granted("dispatch", "WRITE")


def test_a_new_http_courier_in_the_partner_table_gets_a_gateway_group_topics_and_rights() -> None:
    table = load_partners()
    ems = table.couriers[0].model_copy(update={"code": "ems", "integration": "http"})
    wider = table.model_copy(update={"couriers": (*table.couriers, ems)})
    groups = {d.group for d in declarations(HubSettings(), wider)}
    assert "gateway-ems" in groups
    assert granted("gateway-ems", "READ", wider) >= {"courier.ems.pickup-orders"}
    assert "courier.ems.events" in granted("gateway-ems", "WRITE", wider)
    assert "courier.ems.pickup-orders" in granted("dispatch", "WRITE", wider)
    assert "courier.ems.events" in granted("dispatch", "READ", wider)
    assert "courier.ems.pickup-orders" in {s.name for s in all_topics(HubSettings(), wider)}


def test_hub_run_knows_every_declared_group_and_names_them_for_an_unknown_one() -> None:
    settings = HubSettings()
    for declaration in declarations(settings):
        found = declaration_of(declaration.group, settings)
        assert (found.group, found.adapter, found.partner) == (
            declaration.group,
            declaration.adapter,
            declaration.partner,
        )
    with pytest.raises(ValueError, match=r"unknown service 'intak'; known: intake, dispatch"):
        declaration_of("intak", settings)


def test_the_http_front_door_may_write_the_storefront_topic_and_nothing_else() -> None:
    settings = HubSettings()
    (ingress,) = [d for d in declarations(settings) if d.group == "ingress"]
    assert ingress.adapter is bootstrap.Adapter.HTTP_INGRESS
    assert not ingress.consumes
    assert ingress.outputs == ("storefront.aftersales.requests",)
    rights = {
        (b.resource_type.name, b.resource_name, b.operation.name)
        for b in all_bindings(settings)
        if b.principal == user("ingress")
    }
    assert rights == {("TOPIC", "storefront.aftersales.requests", "WRITE")}
    topics = {spec.name for spec in all_topics(settings)}
    assert not {t for t in topics if t.startswith("ingress.") or ".ingress." in t}
