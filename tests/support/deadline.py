"""A deadline service for timer tests: ask, then an answer must come before the deadline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hub.core.handler import Decision, Emit, Route, Service, routes
from hub.core.registry import Event, Registry

if TYPE_CHECKING:
    from datetime import datetime, timedelta

REGISTRY = Registry()


@REGISTRY.register
class AskedV1(Event):
    """A question to a partner: its answer is due within the service's deadline."""

    event_type = "test.deadline.asked"
    version = 1

    case_id: str


@REGISTRY.register
class AnsweredV1(Event):
    """The partner's answer, stamped when given."""

    event_type = "test.deadline.answered"
    version = 1

    case_id: str


@REGISTRY.register
class AnswerDueV1(Event):
    """The deadline, back from the timer topic."""

    event_type = "test.deadline.due"
    version = 1

    case_id: str


@REGISTRY.register
class JudgedV1(Event):
    """What the deadline found: answered in time, or not."""

    event_type = "test.deadline.judged"
    version = 1

    case_id: str
    answered: bool


class Question(BaseModel):
    """What the deadline service keeps per case."""

    model_config = ConfigDict(frozen=True)

    answered: bool = False


def deadline_service(
    group: str, input_topic: str, output_topic: str, deadline: timedelta
) -> Service:
    """A service that asks, waits `deadline` for the answer, and judges it on `output_topic`."""

    def asked(event: AskedV1, state: Question | None, _at: datetime) -> Decision[Question]:
        due = Emit.timer("due", AnswerDueV1(case_id=event.case_id), deadline)
        return Decision(emits=(due,), state=state or Question())

    def answered(event: AnsweredV1, state: Question | None, _at: datetime) -> Decision[Question]:
        del event
        return Decision(state=(state or Question()).model_copy(update={"answered": True}))

    def due(event: AnswerDueV1, state: Question | None, _at: datetime) -> Decision[Question]:
        judged = JudgedV1(case_id=event.case_id, answered=state is not None and state.answered)
        return Decision(emits=(Emit("judged", judged),))

    return Service(
        group=group,
        inputs=(input_topic,),
        handlers={
            AskedV1.event_type: asked,
            AnsweredV1.event_type: answered,
            AnswerDueV1.event_type: due,
        },
        source="urn:aftersales-hub:test-deadline",
        emits=routes(Route.to(output_topic), JudgedV1),
        state_model=Question,
        timers=(deadline,),
    )
