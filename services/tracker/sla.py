"""The SLA table (`deploy/sla.yaml`): thresholds per category and clock, and the ops recipient."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.core.settings import HubSettings, parse_duration, shipped
from hub.messages.common import Channel
from hub.messages.tracker import SlaClock


def _durations(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(parse_duration(item) if isinstance(item, str) else item for item in value)
    return value


class Thresholds(BaseModel):
    """One threshold per escalation level of each clock, mildest first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pickup: tuple[timedelta, ...]
    repair: tuple[timedelta, ...]
    turnaround: tuple[timedelta, ...]
    parts: tuple[timedelta, ...] = (timedelta(hours=72), timedelta(hours=168))
    """Waiting for spare parts; a table written before this clock gets these levels."""

    _parse = field_validator("pickup", "repair", "turnaround", "parts", mode="before")(_durations)

    @field_validator("pickup", "repair", "turnaround", "parts")
    @classmethod
    def _increasing(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if list(value) != sorted(set(value)) or any(t <= timedelta(0) for t in value):
            raise ValueError("levels must be positive and strictly increasing")
        return value

    def of(self, clock: SlaClock) -> tuple[timedelta, ...]:
        """The thresholds of `clock`, level 1 first."""
        levels: tuple[timedelta, ...] = getattr(self, clock.value)
        return levels


class OpsRecipient(BaseModel):
    """Where breach notifications for operations go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel = Channel.EMAIL
    address: str = Field(min_length=1)
    locale: str = "en"


class SlaTable(BaseModel):
    """SLA thresholds per category (with a default) and the operations recipient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ops: OpsRecipient
    default: Thresholds
    categories: dict[str, Thresholds] = Field(default_factory=dict)
    check_delays: tuple[timedelta, ...] = ()

    _parse = field_validator("check_delays", mode="before")(_durations)

    def thresholds(self, category: str, clock: SlaClock) -> tuple[timedelta, ...]:
        """The level thresholds of `clock` for items of `category`."""
        return self.categories.get(category, self.default).of(clock)

    @property
    def timer_delays(self) -> tuple[timedelta, ...]:
        """Every delay the tracker may schedule a check with: one timer topic each."""
        every = {*self.check_delays}
        for table in (self.default, *self.categories.values()):
            for clock in SlaClock:
                every.update(table.of(clock))
        return tuple(sorted(every))


def load_sla(path: Path | None = None) -> SlaTable:
    """Read and validate the SLA table; a mistake names the file and the field."""
    configured = HubSettings().sla_file
    source = path or (Path(configured) if configured else shipped("sla.yaml"))
    return SlaTable.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
