"""What every Kafka-native partner simulator shares: read one topic, answer on another."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hub.core.envelope import Envelope
from hub.core.errors import HubError
from hub.core.lifecycle import AsyncResource
from hub.core.outbound import event_record
from hub.messages import CATALOGUE

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from hub.core.registry import Event

log = structlog.get_logger(__name__)

SEND_BACKOFF = wait_exponential(multiplier=0.1, max=2.0)
"""Between two tries of one answer while the broker cannot take it."""


def say_if_failed(partner: str) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback that logs the task's exception, if it failed.

    A partner that silently stopped answering would look like a hub losing cases.
    """

    def callback(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("partner_sim_task_failed", partner=partner, exc_info=error)

    return callback


class KafkaPartner(AsyncResource):
    """A partner that consumes `inbox` and publishes to `outbox`, keyed by case id."""

    def __init__(
        self, name: str, bootstrap_servers: str, *, inbox: str, outbox: str, seed: int | None
    ) -> None:
        self.name = name
        self._bootstrap = bootstrap_servers
        self._inbox = inbox
        self._outbox = outbox
        self.random = random.Random(seed)  # noqa: S311 - a simulation, not crypto
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect and start serving."""
        self._consumer = AIOKafkaConsumer(
            self._inbox,
            bootstrap_servers=self._bootstrap,
            group_id=f"partner-sim-{self.name}",
            auto_offset_reset="earliest",
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            # Hundreds of answers are sent at once: with aiokafka's 16 KiB batches each sender
            # waits on a full batch and every drain wakes them all, which took a whole core at
            # 200 cases/s. One batch holds what arrives while the previous one is in flight.
            max_batch_size=1024 * 1024,
            linger_ms=5,
        )
        await self._consumer.start()
        await self._producer.start()
        self.spawn(self._serve())

    async def stop(self) -> None:
        """Stop serving and disconnect."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background until the partner stops."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(say_if_failed(self.name))

    async def emit(self, event: Event, case_id: str, event_id: str) -> None:
        """Publish one event to the outbox, keyed by case id."""
        assert self._producer is not None  # noqa: S101 - started before serving
        record = event_record(
            self._outbox, event, key=case_id, source=f"urn:partner:{self.name}", event_id=event_id
        )
        producer = self._producer
        # A real partner sends again until the broker takes the answer (a node down, leaders
        # moving): the event id stays the same, so the hub reads a repeat once.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaError), wait=SEND_BACKOFF, reraise=True
        ):
            with attempt:
                await producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )

    async def on_event(self, event: Event, raw: bytes) -> None:
        """React to one message of the inbox."""

    async def _serve(self) -> None:
        assert self._consumer is not None  # noqa: S101 - started above
        async for record in self._consumer:
            try:
                envelope = Envelope.from_headers(record.headers)
                event = CATALOGUE.decode(envelope.type, record.value or b"")
            except HubError as error:
                log.warning("partner_sim_unreadable", partner=self.name, error=str(error))
                continue
            await self.on_event(event, record.value or b"")
