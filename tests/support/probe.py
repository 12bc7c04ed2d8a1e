"""A probe service for kernel tests: a handler whose failures a test plans in advance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hub.core.errors import EarlyEventError, PermanentError, TransientError
from hub.core.handler import Decision, Emit, Route, Service, routes
from hub.core.registry import Event, Registry

if TYPE_CHECKING:
    from datetime import datetime

REGISTRY = Registry()


@REGISTRY.register
class ProbeV1(Event):
    """An input of the probe service."""

    event_type = "test.probe"
    version = 1

    seq: int
    payload: str = ""


@REGISTRY.register
class ProbeDoneV1(Event):
    """The probe service's output for one input."""

    event_type = "test.probe.done"
    version = 1

    seq: int
    handled_count: int


class ProbeState(BaseModel):
    """What the probe service keeps per key."""

    model_config = ConfigDict(frozen=True)

    handled: int
    last_seq: int


@dataclass
class FaultPlan:
    """Failures to inject by input `seq`, and the order in which the handler saw inputs."""

    output: str = ""
    transient: dict[int, int] = field(default_factory=dict)
    """seq -> how many more calls fail transiently."""
    permanent: set[int] = field(default_factory=set)
    early_until: dict[int, int] = field(default_factory=dict)
    """seq -> the seq that must be handled first (until then it is early)."""
    handled: set[int] = field(default_factory=set, repr=False)
    seen: list[int] = field(default_factory=list, repr=False)
    """Every seq handled, in order; kept out of the repr, which names the handler in headers."""

    def handle(
        self, event: ProbeV1, state: ProbeState | None, _at: datetime
    ) -> Decision[ProbeState]:
        seq = event.seq
        self.seen.append(seq)
        if self.transient.get(seq, 0) > 0:
            self.transient[seq] -= 1
            raise TransientError(f"courier API timed out for probe {seq}")
        if seq in self.permanent:
            raise PermanentError(f"probe {seq} cannot be applied")
        cause = self.early_until.get(seq)
        if cause is not None and cause not in self.handled:
            raise EarlyEventError(f"probe {seq} answers probe {cause}, not handled yet")
        self.handled.add(seq)
        count = (state.handled if state is not None else 0) + 1
        return Decision(
            emits=(Emit(role="done", event=ProbeDoneV1(seq=seq, handled_count=count)),),
            state=ProbeState(handled=count, last_seq=seq),
        )


def probe_service(group: str, input_topic: str, output_topic: str, plan: FaultPlan) -> Service:
    """A service reading `input_topic` and emitting one ProbeDoneV1 per input on `output_topic`."""
    plan.output = output_topic
    return Service(
        group=group,
        inputs=(input_topic,),
        handlers={ProbeV1.event_type: plan.handle},
        source="urn:aftersales-hub:test-probe",
        emits=routes(Route.to(output_topic), ProbeDoneV1),
        state_model=ProbeState,
    )
