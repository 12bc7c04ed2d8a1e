"""What a handler receives and returns: pure decisions from an input and the key's state.

A handler is `(event, state, at) -> Decision`: the input event (upcast to its latest version),
the key's state as the service's typed state model (None before the first decision), and the
input's time. The kernel validates the stored state into the model and stores what it returns.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import UnionType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from hub.core.errors import InvalidStateError, UndeclaredOutputError
from hub.core.topics import timer_topic

if TYPE_CHECKING:
    from datetime import timedelta

    from hub.core.registry import Event
    from hub.core.store.base import JsonObject
    from hub.core.table import LatestTable

StateT = TypeVar("StateT", bound=BaseModel)

StateModel = type[BaseModel] | UnionType
"""A service's state: a pydantic model, or a union of models (one per shape the state takes)."""


@dataclass(frozen=True, slots=True)
class Emit:
    """One output event; its id is derived from the input id and `role`, so retries repeat it.

    It names no topic: the service's declaration routes each event type (see `Route`).
    """

    role: str
    event: Event
    key: str | None = None
    """Defaults to the input's key (the case id keeps a case in one partition)."""
    subject: str | None = None
    """`ce_subject`; defaults to the output key."""
    delay: timedelta | None = None
    """A timer: deliver the event back to this group after `delay` (one of `Service.timers`).

    Due at the input's time plus `delay`, so reprocessing schedules the same timer.
    """
    partner: str | None = None
    """The courier or repair center the event is addressed to, for a per-partner route."""

    @classmethod
    def timer(cls, role: str, event: Event, delay: timedelta) -> Emit:
        """`event` back to this group after `delay` (its topic follows from the delay)."""
        return cls(role=role, event=event, delay=delay)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a service sends one event type: one topic, or its partner's topic of a family."""

    topics: tuple[str, ...]
    """Every topic the route may choose: what topic declarations and ACLs are derived from."""
    partner_topic: Callable[[str], str] | None = None

    @classmethod
    def to(cls, topic: str) -> Route:
        """Always `topic`."""
        return cls((topic,))

    @classmethod
    def per_partner(cls, partner_topic: Callable[[str], str], partners: Iterable[str]) -> Route:
        """The topic of the partner an emit names, among `partners`."""
        return cls(tuple(partner_topic(code) for code in partners), partner_topic)

    def topic_for(self, emit: Emit) -> str:
        """The emit's topic; UndeclaredOutputError when the route does not reach it."""
        if self.partner_topic is None:
            return self.topics[0]
        if emit.partner is None:
            raise UndeclaredOutputError(f"{emit.event.event_type} names no partner to go to")
        topic = self.partner_topic(emit.partner)
        if topic not in self.topics:
            raise UndeclaredOutputError(f"{emit.event.event_type} to undeclared {topic}")
        return topic


def routes(route: Route, *models: type[Event]) -> dict[str, Route]:
    """`route` for each of `models` (event families): a part of a declaration's `emits`."""
    return dict.fromkeys((model.event_type for model in models), route)


@dataclass(frozen=True, slots=True)
class Decision(Generic[StateT]):
    """A handler's answer: what to emit, and the key's new state (None leaves it unchanged)."""

    emits: tuple[Emit, ...] = ()
    state: StateT | None = None


Handler = Callable[[Any, Any, datetime], Decision[Any] | Awaitable[Decision[Any]]]
"""`(event, state, at) -> Decision`, or a coroutine for handlers that call a partner."""


@dataclass(frozen=True, slots=True)
class Service:
    """A consumer group: the topics it reads and one handler per event family it cares about.

    Events of other families on those topics are skipped; events this code cannot read are
    dead-lettered.
    """

    group: str
    inputs: tuple[str, ...]
    handlers: Mapping[str, Handler]
    source: str
    state_model: StateModel | None
    """The typed state handlers receive and return; None for a service that keeps none.

    Required, so that every declaration says which (or that it keeps none). Frozen: the kernel
    hands one record's new state to the next record of the key as is.
    """
    state_key: Callable[[Any], str | None] | None = None
    """Which state document an event reads and writes; by default the record key (the case)."""
    timers: tuple[timedelta, ...] = ()
    """Delays the handlers may set on an Emit; each has a topic `<group>.timer.<delay>`."""
    emits: Mapping[str, Route] = field(default_factory=dict)
    """Where each event type (family) the handlers emit goes; any other is refused."""
    ordered: bool = True
    """Whether a key's records are handled in order: one waiting in a retry tier parks the
    key's later records behind it. False for a group whose records stand alone (one
    notification each: nothing depends on the one before, and carriers do not keep the order
    of text messages anyway), so that a failure costs no store writes for the others.
    """
    concurrency: int = 1
    """How many keys' records the kernel handles at once within a poll.

    More than 1 for groups whose handlers wait on partners: a slow or failing call then holds
    its own key, not the poll. Records sharing a record key, state key or event stay in order.
    """
    tables: tuple[LatestTable[Any], ...] = ()
    """Compacted topics every instance reads whole (reference data its handlers look up).

    Restored before the group consumes, then followed; see `hub.core.table`.
    """

    def load_state(self, document: JsonObject | None, key: str | None = None) -> BaseModel | None:
        """The stored document of `key` as the state model; InvalidStateError when it fails."""
        if document is None or self.state_model is None:
            return None
        try:
            state: BaseModel = _adapter(self.state_model).validate_python(document)
        except ValidationError as error:
            raise InvalidStateError(
                f"the {self.group} state of {key} no longer validates: {error}"
            ) from error
        return state

    def check_state(self, state: BaseModel | None) -> BaseModel | None:
        """`state` when it is of the declared model; InvalidStateError otherwise."""
        if state is None:
            return None
        if self.state_model is None:
            raise InvalidStateError(f"{self.group} declares no state model, yet returned a state")
        if not isinstance(state, self.state_model):
            raise InvalidStateError(
                f"{self.group} returned a {type(state).__name__} state, not its state model"
            )
        return state

    def dump_state(self, state: BaseModel | None) -> JsonObject | None:
        """The document the store keeps for `state` (JSON types, fields in model order)."""
        if state is None:
            return None
        if self.state_model is None:
            raise InvalidStateError(f"{self.group} declares no state model, yet returned a state")
        document: JsonObject = _adapter(self.state_model).dump_python(state, mode="json")
        return document

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every topic this group may write events to (its own retry and timer topics aside)."""
        return tuple(
            dict.fromkeys(topic for route in self.emits.values() for topic in route.topics)
        )

    def topic_for(self, emit: Emit) -> str:
        """The topic the declaration routes `emit` to; UndeclaredOutputError when it has none."""
        if emit.delay is not None:
            if emit.delay not in self.timers:
                raise UndeclaredOutputError(f"{self.group} declares no timer of {emit.delay}")
            return timer_topic(self.group, emit.delay)
        route = self.emits.get(emit.event.event_type)
        if route is None:
            raise UndeclaredOutputError(
                f"{self.group} declares no output for {emit.event.event_type}"
            )
        return route.topic_for(emit)

    @property
    def timer_topics(self) -> tuple[str, ...]:
        """The topics that carry this group's timers."""
        return tuple(timer_topic(self.group, delay) for delay in self.timers)

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Inputs and timer topics: each gets retry tiers and a dead-letter topic."""
        return (*self.inputs, *self.timer_topics)


@functools.cache
def _adapter(model: StateModel) -> TypeAdapter[Any]:
    # Built once per model: a TypeAdapter compiles its validator and serializer.
    return TypeAdapter(cast("Any", model))
