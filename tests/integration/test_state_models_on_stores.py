"""Rows stored before the state models, on SQLite and PostgreSQL, load and are written back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakes import InMemorySink

from hub.bootstrap import declarations
from hub.core.outbound import event_record
from hub.core.pipeline import Outcome, Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import EventId, KafkaRecord
from hub.core.topics import STOREFRONT_REQUESTS
from hub.messages import CATALOGUE
from hub.messages.storefront import AfterSalesCancelledV1

if TYPE_CHECKING:
    from hub.core.store.base import JsonObject, StateStore

pytestmark = pytest.mark.integration
pytest_plugins = ("store_fixtures",)

STORED = json.loads((Path(__file__).parents[1] / "support" / "stored_states.json").read_text())
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def text_of(document: JsonObject | None) -> str:
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


async def test_every_service_reads_its_old_rows_and_writes_them_back_unchanged(
    state_store: StateStore, store_group: str
) -> None:
    services = {d.group: d.service for d in declarations(HubSettings())}
    checked = 0
    for group, texts in STORED.items():
        if group not in services:
            continue  # the file's note
        service = services[group]
        for index, text in enumerate(texts):
            key = f"{group}-{index}"
            old = EventId("urn:old", key)
            await state_store.record_processed(store_group, old, key=key, state=json.loads(text))
            state = service.load_state(await state_store.load_state(store_group, key), key)
            again = EventId("urn:new", key)
            document = service.dump_state(state)
            await state_store.record_processed(store_group, again, key=key, state=document)
            assert text_of(await state_store.load_state(store_group, key)) == text, key
            checked += 1
    assert checked == sum(len(texts) for group, texts in STORED.items() if group in services)


async def test_intake_takes_an_old_row_on_to_its_next_state(
    state_store: StateStore, store_group: str
) -> None:
    intake = next(d.service for d in declarations(HubSettings()) if d.group == "intake")
    opened = json.loads(STORED["intake"][0])
    old = EventId("urn:old", "e0")
    await state_store.record_processed(intake.group, old, key=store_group, state=opened)
    sink = InMemorySink()
    pipeline = Pipeline(
        intake, registry=CATALOGUE, store=state_store, sink=sink, settings=HubSettings()
    )
    withdrawal = AfterSalesCancelledV1(
        request_id=opened["request_id"], order_item_id=store_group, cancelled_at=NOW
    )
    out = event_record(
        STOREFRONT_REQUESTS, withdrawal, key=store_group, source="urn:t", event_id=store_group
    )
    record = KafkaRecord(STOREFRONT_REQUESTS, 0, 0, 0, out.key, out.value, out.headers)
    result = await pipeline.process_batch([record])
    assert result.outcomes == (Outcome.PROCESSED,)
    assert [r.topic for r in sink.records] == ["aftersales.cases"]
    after = await state_store.load_state(intake.group, store_group)
    assert text_of(after) == STORED["intake"][1]
