"""Operator actions on dead letters; each one ends with its audit event on `hub.ops.audit`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from hub.core.envelope import Envelope
from hub.core.errors import PermanentError
from hub.core.lifecycle import AsyncResource
from hub.core.service import KafkaSink
from hub.core.settings import OperatorSettings
from hub.core.topics import AUDIT
from hub.messages.ops import FieldChange, OpsAction, OpsActionAuditedV1
from hub.ops import edit as editing
from hub.ops.audit import write_audit
from hub.ops.dlq import (
    DeadLetter,
    Generations,
    Ref,
    Selection,
    group_of_topic,
    is_dead_letter_topic,
    refs_text,
    select,
)
from hub.ops.dryrun import Prediction, predict, service_and_store
from hub.ops.kafka_io import TopicReader, delete_records, partition_key
from hub.ops.replay import (
    DEFAULT_MAX_REPLAYS,
    Checkpoint,
    new_replay_id,
    replay_record,
    run_replay,
)

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Mapping, Sequence

    from aiokafka import TopicPartition

    from hub.core.handler import Service
    from hub.core.outbound import RecordSink
    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import StateStore

log = structlog.get_logger(__name__)


def default_registry() -> Registry:
    """Today's models: every message the hub knows, with its upcasters."""
    from hub.messages import CATALOGUE  # noqa: PLC0415 - the catalogue imports every model

    return CATALOGUE


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Shown:
    """One dead letter with its envelope and payload decoded, or why they do not decode."""

    letter: DeadLetter
    envelope: Envelope | None
    event: Event | None
    problem: str | None


@dataclass(frozen=True, slots=True)
class Edited:
    """An edited copy sent to the replay topic; the original stays where it was."""

    letter: DeadLetter
    replay_id: str
    changes: tuple[FieldChange, ...]
    value: bytes


class NotFoundError(LookupError):
    """No dead letter answers the reference."""


class Ops(AsyncResource):
    """The tooling's session: the cluster, a producer for replays and audits, who acts and why."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        actor: str,
        reason: str = "",
        sink: RecordSink | None = None,
        clock: Callable[[], datetime] = utc_now,
        scan_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._scan_progress = scan_progress
        self.actor = actor
        self.reason = reason
        self._own_sink = sink is None
        self.sink: RecordSink = sink or KafkaSink(settings, client_id="hub-ops")
        self._clock = clock

    async def start(self) -> None:
        """Connect the audit and replay producer, unless the caller brought a sink."""
        if self._own_sink and isinstance(self.sink, KafkaSink):
            await self.sink.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer this object started."""
        if self._own_sink and isinstance(self.sink, KafkaSink):
            await self.sink.stop()

    @property
    def state_dir(self) -> Path:
        """Where replay checkpoints are kept."""
        return Path(self.settings.state_dir)

    async def audit(
        self,
        action: OpsAction,
        *,
        count: int,
        group: str | None = None,
        selection: Mapping[str, str] | None = None,
        refs: Sequence[str] = (),
        outcome: Mapping[str, int] | None = None,
        replay_id: str | None = None,
        diff: Sequence[FieldChange] = (),
        reason: str | None = None,
    ) -> OpsActionAuditedV1:
        """Write one audit event and return it (`reason` defaults to the session's)."""
        event = OpsActionAuditedV1(
            action=action,
            actor=self.actor,
            at=self._clock(),
            reason=self.reason if reason is None else reason,
            count=count,
            group=group,
            selection=dict(selection or {}),
            refs=tuple(refs),
            outcome=dict(outcome or {}),
            replay_id=replay_id,
            diff=tuple(diff),
        )
        await write_audit(self.sink, event, source=self.settings.source)
        return event

    async def trail(
        self, *, group: str | None = None, since: datetime | None = None
    ) -> list[OpsActionAuditedV1]:
        """The audit events on `hub.ops.audit` (of `group`, since `since`), oldest first."""
        async with TopicReader(self.settings, self._scan_progress) as reader:
            # An event's record is written after its `at`: older records cannot match `since`.
            records = await (
                reader.read_all([AUDIT])
                if since is None
                else reader.read_since([AUDIT], int(since.timestamp() * 1000))
            )
        events = [OpsActionAuditedV1.model_validate_json(r.value or b"{}") for r in records]
        return sorted(
            (
                event
                for event in events
                if (group is None or event.group == group) and (since is None or event.at >= since)
            ),
            key=lambda event: event.at,
        )

    async def letters(self, selection: Selection) -> list[DeadLetter]:
        """The selected dead letters as they are now."""
        async with TopicReader(self.settings, self._scan_progress) as reader:
            return select(await reader.dead_letters(selection.group), selection)

    async def inspect(self, action: OpsAction, selection: Selection) -> list[DeadLetter]:
        """`list` and `groups`: the selected dead letters, audited as read."""
        letters = await self.letters(selection)
        await self.audit(
            action, count=len(letters), group=selection.group, selection=selection.describe()
        )
        return letters

    async def show(self, reference: str, registry: Registry) -> Shown:
        """One dead letter by `topic:partition:offset` or by `ce_id`, decoded as far as it goes."""
        letter = await self._find(reference)
        envelope: Envelope | None = None
        event: Event | None = None
        problem: str | None = None
        try:
            envelope, data = Envelope.from_record(letter.original_headers, letter.record.value)
            event = registry.decode(envelope.type, data)
        except PermanentError as error:
            problem = f"{type(error).__name__} ({error.stage}): {error}"
        await self.audit("show", count=1, group=letter.group, refs=[str(letter.ref)])
        return Shown(letter, envelope, event, problem)

    async def _find(self, reference: str) -> DeadLetter:
        try:
            ref = Ref.parse(reference)
        except ValueError:
            matches = await self.letters(Selection(ids=frozenset({reference})))
            if not matches:
                raise NotFoundError(f"no dead letter with ce_id {reference!r}") from None
            return matches[-1]  # the latest failure of that event
        async with TopicReader(self.settings, self._scan_progress) as reader:
            record = await reader.read_one(ref)
        if record is None:
            raise NotFoundError(f"no record at {ref} (purged, expired or never written)")
        return DeadLetter.from_record(record)

    async def dry_run(
        self,
        selection: Selection,
        *,
        registry: Registry,
        max_replays: int = DEFAULT_MAX_REPLAYS,
        service: Service | None = None,
        store: StateStore | None = None,
    ) -> list[Prediction]:
        """What a replay of `selection` would do; nothing is sent but the audit event."""
        async with TopicReader(self.settings, self._scan_progress) as reader:
            every = await reader.dead_letters(selection.group)
        letters = select(every, selection)
        predictions = await predict(
            letters,
            registry=registry,
            max_replays=max_replays,
            service=service,
            store=store,
            generations=Generations.of(every),
        )
        outcome: dict[str, int] = {}
        for prediction in predictions:
            outcome[prediction.verdict] = outcome.get(prediction.verdict, 0) + 1
        await self.audit(
            "dry-run",
            count=len(letters),
            group=selection.group,
            selection=selection.describe(),
            refs=refs_text(letters),
            outcome=outcome,
        )
        return predictions

    async def dry_run_with_handler(
        self,
        selection: Selection,
        *,
        registry: Registry,
        max_replays: int = DEFAULT_MAX_REPLAYS,
    ) -> list[Prediction]:
        """`dry_run` with the selected group's own handler and state store, when it has them."""
        service, store = await service_and_store(self.settings, selection.group)
        try:
            return await self.dry_run(
                selection, registry=registry, max_replays=max_replays, service=service, store=store
            )
        finally:
            if store is not None:
                await store.close()

    async def plan_replay(
        self,
        selection: Selection,
        *,
        max_replays: int = DEFAULT_MAX_REPLAYS,
        rate: float | None = None,
        replay_id: str | None = None,
    ) -> Checkpoint:
        """A new replay run over the dead letters there are now, saved as its first checkpoint."""
        async with TopicReader(self.settings, self._scan_progress) as reader:
            bounds = await reader.bounds(await reader.dead_letter_topics(selection.group))
        now = self._clock()
        checkpoint = Checkpoint(
            replay_id=replay_id or new_replay_id(),
            actor=self.actor,
            reason=self.reason,
            selection=selection.describe(),
            max_replays=max_replays,
            rate=rate,
            started_at=now,
            updated_at=now,
            start={partition_key(tp): first for tp, (first, _) in bounds.items()},
            end={partition_key(tp): end for tp, (_, end) in bounds.items()},
            position={partition_key(tp): first for tp, (first, _) in bounds.items()},
        )
        checkpoint.save(self.state_dir)
        return checkpoint

    def load_replay(self, replay_id: str) -> Checkpoint:
        """A saved replay run, to resume it."""
        return Checkpoint.load(self.state_dir, replay_id)

    async def replay(
        self,
        checkpoint: Checkpoint,
        *,
        stop: asyncio.Event | None = None,
        progress: Callable[[Checkpoint], None] | None = None,
    ) -> Checkpoint:
        """Run (or resume) a replay; audit what this run sent, whether it finished or stopped."""
        sent, parked, superseded = checkpoint.sent, checkpoint.parked, checkpoint.superseded
        already_parked = checkpoint.already_parked
        refs_before = len(checkpoint.refs)
        try:
            async with TopicReader(self.settings, self._scan_progress) as reader:
                await run_replay(
                    checkpoint,
                    reader=reader,
                    sink=self.sink,
                    state_dir=self.state_dir,
                    stop=stop,
                    progress=progress,
                    clock=self._clock,
                    keep_bytes=OperatorSettings().replay_memory_mb * 1024 * 1024,
                )
        finally:
            outcome = {
                "sent": checkpoint.sent - sent,
                "parked": checkpoint.parked - parked,
                "superseded": checkpoint.superseded - superseded,
                "already_parked": checkpoint.already_parked - already_parked,
                "done": int(checkpoint.done),
            }
            await self.audit(
                "replay",
                count=outcome["sent"] + outcome["parked"],
                group=checkpoint.selection.get("group"),
                selection=checkpoint.selection,
                refs=checkpoint.refs[refs_before:],
                outcome=outcome,
                replay_id=checkpoint.replay_id,
                reason=self.reason or checkpoint.reason,  # a resume keeps the run's reason
            )
        return checkpoint

    async def prepare_edit(
        self,
        reference: str,
        *,
        registry: Registry,
        assignments: Mapping[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Edited:
        """The edited copy of one dead letter and its diff, validated; nothing is sent.

        Raises ValueError or TypeError for an edit that cannot apply and PermanentError for a
        copy today's models refuse (it would only be dead-lettered again).
        """
        letter = await self._find(reference)
        try:
            before = json.loads(letter.record.value or b"")
        except (UnicodeDecodeError, json.JSONDecodeError):
            before = None
        if payload is None:
            if not isinstance(before, dict):
                raise ValueError("the payload is not a JSON object: give a whole new one")
            payload = editing.apply_assignments(before, assignments or {})
        value = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        envelope = Envelope.from_headers(letter.original_headers)
        registry.decode(envelope.type, value)  # refuse a copy that would dead-letter again
        return Edited(letter, "", tuple(editing.diff(before, payload)), value)

    async def edit(
        self,
        reference: str,
        *,
        registry: Registry,
        assignments: Mapping[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Edited:
        """Send an edited copy of one dead letter to its replay topic, validated first."""
        prepared = await self.prepare_edit(
            reference, registry=registry, assignments=assignments, payload=payload
        )
        letter = prepared.letter
        replay_id = new_replay_id()
        record = replay_record(
            letter, replay_id=replay_id, by=self.actor, at=self._clock(), value=prepared.value
        )
        await self.sink.send([record])
        await self.audit(
            "edit",
            count=1,
            group=letter.group,
            refs=[str(letter.ref)],
            outcome={"sent": 1},
            replay_id=replay_id,
            diff=prepared.changes,
        )
        return Edited(letter, replay_id, prepared.changes, prepared.value)

    async def purge_plan(
        self, topic: str, *, partition: int | None = None, before_offset: int | None = None
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Per partition, the first offset and the offset purging would delete up to."""
        if not is_dead_letter_topic(topic):
            raise ValueError(f"{topic} is not a dead-letter topic")
        async with TopicReader(self.settings, self._scan_progress) as reader:
            bounds = await reader.bounds([topic])
        if not bounds:
            raise NotFoundError(f"no topic {topic}")
        plan: dict[TopicPartition, tuple[int, int]] = {}
        for tp, (first, end) in bounds.items():
            if partition is not None and tp.partition != partition:
                continue
            upto = end if before_offset is None else min(max(before_offset, first), end)
            if upto > first:
                plan[tp] = (first, upto)
        return plan

    async def purge(self, plan: Mapping[TopicPartition, tuple[int, int]]) -> int:
        """Delete the planned records (Kafka delete-records); returns how many went."""
        count = sum(upto - first for first, upto in plan.values())
        if plan:
            await delete_records(self.settings, {tp: upto for tp, (_, upto) in plan.items()})
        topics = sorted({tp.topic for tp in plan})
        await self.audit(
            "purge",
            count=count,
            group=group_of_topic(topics[0]) if len(topics) == 1 else None,
            selection={
                "topics": ",".join(topics),
                "upto": ",".join(f"{partition_key(tp)}<{upto}" for tp, (_, upto) in plan.items()),
            },
            outcome={"deleted": count},
        )
        return count
