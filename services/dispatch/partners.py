"""The courier partner table (`deploy/partners.yaml`), loaded into frozen models."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.core.settings import HubSettings, parse_duration, shipped
from hub.messages.cases import TrackingStatus
from hub.messages.courier import PickupContact

EVERYWHERE = "*"


class Courier(BaseModel):
    """One courier partner: where it goes, what it takes, how fast, at what price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9]+$")
    name: str
    integration: Literal["kafka", "http"]
    coverage: tuple[str, ...]
    categories: tuple[str, ...]
    max_insured_value: Decimal
    pickup_sla_hours: int = Field(gt=0)
    price: Decimal
    accept_deadline: timedelta
    tracking_codes: dict[str, TrackingStatus]
    api_url_env: str | None = None
    partner_id_env: str | None = None
    checkword_env: str | None = None

    @field_validator("accept_deadline", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    def covers(self, province: str) -> bool:
        """Whether the courier picks up in `province`."""
        return EVERYWHERE in self.coverage or province in self.coverage

    def carries(self, category: str) -> bool:
        """Whether the courier takes items of `category`."""
        return EVERYWHERE in self.categories or category in self.categories


class RepairCenter(BaseModel):
    """A repair center: the categories it repairs, its address, how the hub reaches it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9]+$")
    integration: Literal["kafka", "http"]
    categories: tuple[str, ...]
    contact: PickupContact
    api_url_env: str | None = None
    webhook_secret_env: str | None = None
    """Names the variable holding the secret the center signs its pushed reports with."""

    def repairs(self, category: str) -> bool:
        """Whether the center takes items of `category`."""
        return EVERYWHERE in self.categories or category in self.categories


class PartsSupplier(BaseModel):
    """A spare-parts supplier (备件): the categories it stocks, how long a case may wait on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9]+$")
    name: str
    integration: Literal["kafka"]
    categories: tuple[str, ...]
    max_wait: timedelta
    """From the reservation request: past it, the hub replaces the item instead of repairing."""

    @field_validator("max_wait", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    def stocks(self, category: str) -> bool:
        """Whether the supplier carries parts for items of `category`."""
        return EVERYWHERE in self.categories or category in self.categories


class Insurer(BaseModel):
    """An insurer of return freight (退货运费险), reached over its HTTP API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[a-z0-9]+$")
    name: str
    integration: Literal["http"]
    api_url_env: str
    secret_env: str
    """Names the variable holding the key the hub signs its claims with (HMAC-SHA256)."""


class PartnerTable(BaseModel):
    """Every courier partner, repair center, parts supplier and freight insurer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    couriers: tuple[Courier, ...]
    repair_centers: tuple[RepairCenter, ...]
    parts_suppliers: tuple[PartsSupplier, ...] = ()
    insurers: tuple[Insurer, ...] = ()

    def supplier_for(self, category: str) -> PartsSupplier | None:
        """The parts supplier for items of `category` (the first that stocks it), if any."""
        return next((s for s in self.parts_suppliers if s.stocks(category)), None)

    @property
    def parts_waits(self) -> tuple[timedelta, ...]:
        """The distinct longest waits for parts: one timer topic of the repair service each."""
        return tuple(sorted({supplier.max_wait for supplier in self.parts_suppliers}))

    def center_for(self, category: str) -> RepairCenter:
        """The repair center for items of `category` (the first that takes it)."""
        for center in self.repair_centers:
            if center.repairs(category):
                return center
        raise ValueError(f"no repair center takes {category!r} (see deploy/partners.yaml)")

    def courier(self, code: str) -> Courier:
        """The courier with `code`; a ValueError naming the known ones otherwise."""
        for courier in self.couriers:
            if courier.code == code:
                return courier
        known = ", ".join(courier.code for courier in self.couriers)
        raise ValueError(f"no courier {code!r} in the partner table (known: {known})")

    def center(self, code: str) -> RepairCenter:
        """The repair center with `code`; a ValueError naming the known ones otherwise."""
        for center in self.repair_centers:
            if center.code == code:
                return center
        known = ", ".join(center.code for center in self.repair_centers)
        raise ValueError(f"no repair center {code!r} in the partner table (known: {known})")

    def insurer(self, code: str) -> Insurer:
        """The insurer with `code`; a ValueError naming the known ones otherwise."""
        for insurer in self.insurers:
            if insurer.code == code:
                return insurer
        known = ", ".join(insurer.code for insurer in self.insurers)
        raise ValueError(f"no insurer {code!r} in the partner table (known: {known})")

    @property
    def deadlines(self) -> tuple[timedelta, ...]:
        """The distinct acceptance deadlines: one timer topic each."""
        return tuple(sorted({courier.accept_deadline for courier in self.couriers}))


def load_partners(path: Path | None = None) -> PartnerTable:
    """Read and validate the partner table; a mistake names the file and the field."""
    configured = HubSettings().partners_file
    source = path or (Path(configured) if configured else shipped("partners.yaml"))
    return PartnerTable.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
