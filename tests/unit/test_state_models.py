"""Each service declares its state model; states stored before the models still load, unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakes import InMemorySink

from dispatch.domain import Dispatch, DormantCase, Shipment
from hub.bootstrap import declarations
from hub.core.handler import Service
from hub.core.outbound import event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import EventId, KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import STOREFRONT_REQUESTS
from hub.messages import CATALOGUE
from hub.messages.storefront import AfterSalesCancelledV1
from insurance.domain import FreightCover
from intake.domain import OrderItem
from notify.domain import Audience
from repair.domain import RepairCase
from tracker.domain import CaseRecord
from tracker.scoring import CourierWindow

if TYPE_CHECKING:
    from hub.core.store.base import JsonObject

STORED = json.loads((Path(__file__).parents[1] / "support" / "stored_states.json").read_text())
"""Documents as each service stored them before it had a state model (see the file's note)."""
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def services() -> dict[str, Service]:
    return {d.group: d.service for d in declarations(HubSettings())}


def stored_text(document: JsonObject | None) -> str:
    """A document as the SQLite and PostgreSQL stores write it."""
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def test_every_declaration_names_its_state_model_or_that_it_keeps_none() -> None:
    models = {group: service.state_model for group, service in services().items()}
    assert {group: model for group, model in models.items() if model is not None} == {
        "intake": OrderItem,
        "dispatch": Dispatch,
        "repair": RepairCase,
        "notify": Audience,
        "tracker": CaseRecord,
        "courier-scores": CourierWindow,
        "insurance": FreightCover,
    }
    # The edge groups call partners and keep nothing; saying so is required (no default).
    assert models["notify-sender"] is None
    assert [group for group in models if group.startswith("gateway-")]
    with pytest.raises(TypeError, match="state_model"):
        Service(group="g", inputs=("t",), handlers={}, source="urn:g")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("group", "index"),
    [(group, index) for group in services() for index in range(len(STORED.get(group, [])))],
)
def test_a_state_stored_before_the_models_loads_and_is_stored_again_byte_for_byte(
    group: str, index: int
) -> None:
    service = services()[group]
    text = STORED[group][index]
    state = service.load_state(json.loads(text), "k")
    assert state is not None
    assert stored_text(service.dump_state(state)) == text


def test_the_dispatch_state_takes_either_of_its_shapes() -> None:
    dispatch = services()["dispatch"]
    shipment, tracked, dormant = (dispatch.load_state(json.loads(t)) for t in STORED["dispatch"])
    assert isinstance(shipment, Shipment)
    assert isinstance(tracked, Shipment)
    assert tracked.seen_events == ("e1",)
    assert isinstance(dormant, DormantCase)
    assert dormant.dormant_case.service_mode == "onsite"


async def test_a_row_stored_before_the_models_is_read_and_written_in_the_same_shape(
    tmp_path: Path,
) -> None:
    intake = services()["intake"]
    opened = json.loads(STORED["intake"][0])
    store = SqliteStateStore(tmp_path / "intake.db")
    await store.open()
    sink = InMemorySink()
    try:
        await store.record_processed("intake", EventId("urn:old", "e0"), key="OI-1", state=opened)
        pipeline = Pipeline(
            intake, registry=CATALOGUE, store=store, sink=sink, settings=HubSettings()
        )
        withdrawal = AfterSalesCancelledV1(
            request_id=opened["request_id"], order_item_id="OI-1", cancelled_at=NOW
        )
        out = event_record(STOREFRONT_REQUESTS, withdrawal, key="OI-1", source="urn:t", time=NOW)
        record = KafkaRecord(STOREFRONT_REQUESTS, 0, 0, 0, out.key, out.value, out.headers)
        result = await pipeline.process_batch([record])
        after = await store.load_state("intake", "OI-1")
    finally:
        await store.close()
    assert result.outcomes == (Outcome.PROCESSED,)
    (cancelled,) = sink.records
    assert cancelled.key == opened["case_id"].encode()
    assert stored_text(after) == STORED["intake"][1]  # what the code before the models wrote
