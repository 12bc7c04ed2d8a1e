"""The front door's duplicate record on SQLite and PostgreSQL: durable, and shared by instances."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from hub.core.outbound import OutRecord
from hub.core.store.base import EventId
from ingress.admission import Admission

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from hub.core.store.base import StateStore

pytestmark = pytest.mark.integration
pytest_plugins = ("store_fixtures",)


class Sink:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send(self, records: Sequence[OutRecord]) -> None:
        await asyncio.sleep(0.005)
        self.records.extend(records)


def record(event_id: str) -> OutRecord:
    return OutRecord(
        "storefront.aftersales.requests", b"RQ-1", b"{}", (("ce_id", event_id.encode()),)
    )


async def test_an_event_sent_by_one_instance_is_a_duplicate_at_another(
    open_state_store: Callable[[], Awaitable[StateStore]], store_group: str
) -> None:
    first, second = await open_state_store(), await open_state_store()
    sink = Sink()
    one, other = Admission(first, sink, store_group), Admission(second, sink, store_group)
    event = EventId("urn:storefront:it", "evt-1")
    copies = await asyncio.gather(*(one.admit(event, record("evt-1")) for _ in range(5)))
    assert sorted(copies) == [False, False, False, False, True]
    assert await other.admit(event, record("evt-1")) is False
    # The same id from another source is another event.
    assert await other.admit(EventId("urn:storefront:other", "evt-1"), record("evt-1")) is True
    assert len(sink.records) == 2
