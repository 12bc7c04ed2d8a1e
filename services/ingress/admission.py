"""Each event on Kafka once: one request in flight per event, a durable record after the ack.

A repeated (`ce_source`, `ce_id`) finds the record and is answered without a second produce.
The questions and the records of requests in flight together are one store call each.
Two identical requests in one process meet at the in-flight table: the second waits for the
first, then finds its record. The record is written only after the broker acknowledged (and
after the answer, which waits only for the ack), so an event is never marked sent without being
on the topic; the window left (a crash between the ack and the record, or the same event at two
instances in the same milliseconds) yields a second record with the same (`ce_source`,
`ce_id`), which intake's inbox counts as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from hub.core.store.base import StaleBatchError

if TYPE_CHECKING:
    from hub.core.outbound import OutRecord, RecordSink
    from hub.core.store.base import EventId, StateStore

log = structlog.get_logger(__name__)


class Admission:
    """Sends records through `sink` at most once per event id, remembered in `store`."""

    def __init__(self, store: StateStore, sink: RecordSink, group: str) -> None:
        self._store = store
        self._sink = sink
        self._group = group
        self._in_flight: dict[EventId, asyncio.Event] = {}
        self._pending: list[tuple[EventId, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._asked: list[tuple[EventId, asyncio.Future[bool]]] = []
        self._reading: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Future[None]] = set()

    async def admit(self, event: EventId, record: OutRecord) -> bool:
        """Send `record` unless `event` was sent before; whether it was sent now.

        Returns once the broker acknowledged (the record follows); raises what the sink raises
        (nothing recorded).
        """
        while (first := self._in_flight.get(event)) is not None:
            await first.wait()
        done = self._in_flight[event] = asyncio.Event()
        try:
            seen = await self._seen(event)
            if not seen:
                await self._sink.send([record])
        except BaseException:
            self._release(event, done)
            raise
        if seen:
            self._release(event, done)
            return False
        # Answered once on the topic: the record's write is not in the answer's latency. A
        # repeat in this process meanwhile waits at the in-flight table until it is written.
        recording = asyncio.ensure_future(self._remember(event))
        self._recording.add(recording)
        recording.add_done_callback(lambda task: self._recorded(task, event, done))
        return True

    def _release(self, event: EventId, done: asyncio.Event) -> None:
        del self._in_flight[event]
        done.set()

    def _recorded(self, task: asyncio.Future[None], event: EventId, done: asyncio.Event) -> None:
        self._recording.discard(task)
        self._release(event, done)

    async def _seen(self, event: EventId) -> bool:
        """Whether `event` was sent before; the questions of one moment are one store read."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._asked.append((event, future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read())
        return await asyncio.shield(future)

    async def _read(self) -> None:
        try:
            while self._asked:
                batch, self._asked = self._asked, []
                try:
                    found = await self._store.load_batch(self._group, [e for e, _ in batch], ())
                except Exception as error:  # noqa: BLE001 - handed to every asker
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for event, future in batch:
                        if not future.done():
                            future.set_result(event in found.processed)
        finally:
            self._reading = None

    async def _remember(self, event: EventId) -> None:
        """Record `event`, committed together with the others waiting (one transaction)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._pending.append((event, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        try:
            await asyncio.shield(future)
        except Exception:  # it is on the topic: answered as sent, and said loudly
            log.exception("ingress_record_failed", source=event.source, event_id=event.id)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                events = [event for event, _ in batch]
                try:
                    try:
                        await self._store.commit_batch(self._group, events, {})
                    except StaleBatchError:
                        # One was recorded meanwhile (another instance): each on its own.
                        for event in events:
                            await self._store.record_processed(self._group, event)
                except Exception as error:  # noqa: BLE001 - handed to every waiter
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = None

    async def close(self) -> None:
        """Wait for the records being written."""
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read a future's outcome even when its request was cancelled meanwhile (no warning)."""
    if not future.cancelled():
        future.exception()
