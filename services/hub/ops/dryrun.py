"""Dry-run of a replay: today's models and the group's handler, with no effect anywhere."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hub.core.envelope import Envelope
from hub.core.errors import FailureClass, PermanentError, classify, stage_of
from hub.core.store.base import EventId
from hub.ops.replay import route

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hub.core.handler import Decision, Service
    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import JsonObject, StateStore
    from hub.ops.dlq import DeadLetter, Generations, Ref

Verdict = Literal["pass", "fail", "duplicate", "ignored", "park", "superseded"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """What replaying one dead letter would do, and why."""

    ref: Ref
    verdict: Verdict
    stage: str = ""
    reason: str = ""

    @property
    def passes(self) -> bool:
        """Whether the replay would be processed and emit its outputs."""
        return self.verdict == "pass"


def _failed(letter: DeadLetter, error: Exception, stage: str) -> Prediction:
    kind = "transient, would retry" if classify(error) is FailureClass.TRANSIENT else "permanent"
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    return Prediction(letter.ref, "fail", stage, f"{name} ({kind}): {error}"[:500])


class _Predictor:
    """The dry-run's memory: ids accepted and state left by earlier letters of this run."""

    def __init__(self, service: Service, store: StateStore | None) -> None:
        self.service = service
        self.store = store
        self.states: dict[str, JsonObject | None] = {}
        self.seen: set[EventId] = set()

    async def _state(self, state_key: str | None) -> JsonObject | None:
        if state_key is None:
            return None
        if state_key not in self.states and self.store is not None:
            self.states[state_key] = await self.store.load_state(self.service.group, state_key)
        return self.states.get(state_key)

    async def _processed(self, event: EventId) -> bool:
        if event in self.seen:
            return True
        return self.store is not None and await self.store.is_processed(self.service.group, event)

    async def handle(self, letter: DeadLetter, envelope: Envelope, event: Event) -> Prediction:
        service = self.service
        handler = service.handlers.get(event.event_type)
        if handler is None:
            reason = f"{service.group} has no handler for {event.event_type}"
            return Prediction(letter.ref, "ignored", "handle", reason)
        if await self._processed(EventId(envelope.source, envelope.id)):
            reason = f"{envelope.id} was already processed (the inbox skips it)"
            return Prediction(letter.ref, "duplicate", "handle", reason)
        state_key = service.state_key(event) if service.state_key else letter.case_id
        try:
            state = service.load_state(await self._state(state_key), state_key)
            answer = handler(event, state, envelope.time)
            decision: Decision[Any] = await answer if inspect.isawaitable(answer) else answer
            _check_emits(service, decision)
            document = service.dump_state(decision.state)
        except Exception as error:  # noqa: BLE001 - a prediction reports every failure
            return _failed(letter, error, stage_of(error, "handle"))
        self.seen.add(EventId(envelope.source, envelope.id))
        if state_key is not None and document is not None:
            self.states[state_key] = document
        return Prediction(letter.ref, "pass", "handle", "handler accepts it")


def _check_emits(service: Service, decision: Decision[Any]) -> None:
    """Fail as rendering the outputs would (an undeclared timer, an unserialisable event)."""
    for emit in decision.emits:
        if emit.delay is not None and emit.delay not in service.timers:
            raise ValueError(f"{service.group} declares no timer of {emit.delay}")
        emit.event.to_bytes()


async def predict(
    letters: Iterable[DeadLetter],
    *,
    registry: Registry,
    max_replays: int,
    service: Service | None = None,
    store: StateStore | None = None,
    generations: Generations | None = None,
) -> list[Prediction]:
    """Predict each letter's replay in order, as the pipeline would take it.

    Without `service` only the envelope and today's models are checked. With it, the handler
    runs on the key's state (from `store`, then as earlier letters of this run left it), its
    outputs are rendered but never sent, and nothing is written.
    """
    predictor = _Predictor(service, store) if service is not None else None
    predictions: list[Prediction] = []
    for letter in letters:
        if generations is not None and not generations.is_newest(letter):
            reason = "a newer dead letter of the same message exists; that one is replayed"
            predictions.append(Prediction(letter.ref, "superseded", "", reason))
            continue
        if route(letter, max_replays) == "park":
            reason = f"replayed {letter.replay_count} times already (limit {max_replays})"
            predictions.append(Prediction(letter.ref, "park", "", reason))
            continue
        try:
            envelope, data = Envelope.from_record(letter.original_headers, letter.record.value)
            event = registry.decode(envelope.type, data)
        except PermanentError as error:
            predictions.append(_failed(letter, error, error.stage))
            continue
        if predictor is None:
            predictions.append(Prediction(letter.ref, "pass", "validate", "decodes and validates"))
        else:
            predictions.append(await predictor.handle(letter, envelope, event))
    return predictions


async def service_and_store(
    settings: HubSettings, group: str | None
) -> tuple[Service | None, StateStore | None]:
    """The hub service of `group` and its opened state store, for the handler pre-check.

    Edge groups and unknown names get neither (the dry run then only validates); a service
    without a state file yet gets no store (its handlers see no state). Close the store after.
    """
    from hub.bootstrap import Adapter, declarations  # noqa: PLC0415 - imports every service
    from hub.core.store.factory import open_store  # noqa: PLC0415

    # Groups whose handlers need partners' clients are not run in a dry-run.
    pure = {d.group: d.service for d in declarations(settings) if d.adapter is Adapter.NONE}
    service = pure.get(group or "")
    if service is None:
        return None, None
    path = Path(settings.state_dir) / f"{group}.db"
    if settings.database_url is None and not path.exists():
        return service, None
    store = open_store(settings.database_url, default_path=path)
    await store.open()
    return service, store
