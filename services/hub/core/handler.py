"""What a handler receives and returns: pure decisions from an input and the key's state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from hub.core.registry import Event
from hub.core.topics import timer_topic

if TYPE_CHECKING:
    from datetime import timedelta

    from hub.core.envelope import Envelope
    from hub.core.store.base import JsonObject

EventT_co = TypeVar("EventT_co", bound=Event, covariant=True)


@dataclass(frozen=True, slots=True)
class Incoming(Generic[EventT_co]):
    """One decoded input: the event upcast to its latest version, its envelope, key and state."""

    event: EventT_co
    envelope: Envelope
    key: str | None
    state: JsonObject | None


@dataclass(frozen=True, slots=True)
class Emit:
    """One output event; its id is derived from the input id and `role`, so retries repeat it."""

    topic: str
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

    @classmethod
    def timer(cls, role: str, event: Event, delay: timedelta) -> Emit:
        """`event` back to this group after `delay` (its topic follows from the delay)."""
        return cls(topic="", role=role, event=event, delay=delay)


@dataclass(frozen=True, slots=True)
class Decision:
    """A handler's answer: what to emit, and the key's new state (None leaves it unchanged)."""

    emits: tuple[Emit, ...] = ()
    state: JsonObject | None = None


Handler = Callable[[Incoming[Any]], Decision | Awaitable[Decision]]


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
    state_key: Callable[[Any], str | None] | None = None
    """Which state document an event reads and writes; by default the record key (the case)."""
    timers: tuple[timedelta, ...] = ()
    """Delays the handlers may set on an Emit; each has a topic `<group>.timer.<delay>`."""

    @property
    def timer_topics(self) -> tuple[str, ...]:
        """The topics that carry this group's timers."""
        return tuple(timer_topic(self.group, delay) for delay in self.timers)

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Inputs and timer topics: each gets retry tiers and a dead-letter topic."""
        return (*self.inputs, *self.timer_topics)
