"""Records to produce, and how an event from outside the hub (the storefront) is enveloped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from hub.core.envelope import Envelope, new_traceparent

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.core.registry import Event
    from hub.core.store.base import Headers


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


class RecordSink(Protocol):
    """Produces records; returns only once the broker acknowledged every one (acks=all)."""

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Produce `records` and wait for their acknowledgements."""


def event_record(
    topic: str,
    event: Event,
    *,
    key: str,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    subject: str | None = None,
) -> OutRecord:
    """A new event that starts a causal chain (no input event caused it)."""
    envelope = Envelope(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event.ce_type(),
        time=time or datetime.now(UTC),
        subject=subject or key,
        dataschema=event.dataschema(),
        traceparent=new_traceparent(),
    )
    return OutRecord(topic, key.encode(), event.to_bytes(), tuple(envelope.to_headers()))
