"""Operator actions on the hub (dead-letter tooling), published to `hub.ops.audit`."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from hub.core.registry import Event
from hub.messages.catalogue import CATALOGUE
from hub.messages.common import NonEmpty, Value

OpsAction = Literal["list", "groups", "show", "replay", "dry-run", "edit", "purge"]


class FieldChange(Value):
    """One changed field of an edited payload; `path` is dotted, a missing side is null."""

    path: NonEmpty
    before: JsonValue = None
    after: JsonValue = None


@CATALOGUE.register
class OpsActionAuditedV1(Event):
    """An operator acted on dead letters: who, when, what, how many and why."""

    event_type = "hub.ops.action-audited"
    version = 1

    action: OpsAction
    actor: NonEmpty
    at: AwareDatetime
    reason: str = Field(default="", max_length=2000)
    count: int = Field(ge=0, description="How many dead letters the action touched.")
    group: str | None = Field(default=None, description="The consumer group concerned, if one.")
    selection: dict[str, str] = Field(
        default_factory=dict, description="The selection as the operator gave it."
    )
    refs: tuple[str, ...] = Field(
        default=(), description="Dead letters touched, as `topic:partition:offset` (first 1,000)."
    )
    outcome: dict[str, int] = Field(
        default_factory=dict, description="Counts per result, e.g. sent, parked, would_pass."
    )
    replay_id: str | None = None
    diff: tuple[FieldChange, ...] = Field(
        default=(), description="edit: the changed fields of the payload."
    )
