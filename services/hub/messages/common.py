"""Value objects shared by several messages."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)


class Value(BaseModel):
    """A frozen value object that ignores fields added by newer minor versions."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class RequestType(StrEnum):
    """What the customer asks for."""

    REPAIR = "repair"
    RETURN = "return"
    EXCHANGE = "exchange"


class ServiceMode(StrEnum):
    """How the item reaches the repair center."""

    PICKUP = "pickup"
    ONSITE = "onsite"
    SELF_SHIP = "self_ship"


class Channel(StrEnum):
    """Ways to reach a customer."""

    SMS = "sms"
    APP_PUSH = "app_push"
    EMAIL = "email"


NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]


def _number_as_from_python(value: object, info: ValidationInfo) -> object:
    """A JSON number read straight from bytes becomes the Decimal of its float's text.

    That is what validating `json.loads`'s objects gives (100.0 -> "100.0"; pydantic's JSON
    mode would give "100"), so an event reads the same whichever way it is decoded.
    """
    if info.mode == "json" and isinstance(value, float):
        return str(value)
    return value


Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    BeforeValidator(_number_as_from_python),  # after the Field: the JSON schema stays as it was
]
"""A sum of money in yuan, at most 12 digits with 2 after the point."""
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{5,19}$")]


class Customer(Value):
    """Who filed the request, and how they want to hear from us."""

    customer_id: NonEmpty
    name: NonEmpty
    phone: Phone
    email: str | None = None
    channels: tuple[Channel, ...] = (Channel.SMS, Channel.APP_PUSH)
    locale: str = "zh-CN"


class Address(Value):
    """A pickup or return address in mainland China."""

    province: NonEmpty
    city: NonEmpty
    district: NonEmpty
    street: NonEmpty
    postal_code: str | None = None


class Item(Value):
    """The item the case is about."""

    sku: NonEmpty
    title: NonEmpty
    category: NonEmpty
    serial_number: NonEmpty
    purchase_date: date
    price: Amount


class Fault(Value):
    """What is wrong with the item, as the customer reports it."""

    code: NonEmpty
    description: Annotated[str, Field(max_length=2000)]


class FreightInsurance(Value):
    """Return-freight insurance (退货运费险) bought with the order: insurer, policy, cap."""

    insurer: NonEmpty
    policy_no: NonEmpty
    max_claim: Amount


class TimeWindow(Value):
    """A window of time, start before end."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _start_before_end(self) -> TimeWindow:
        if self.start >= self.end:
            raise ValueError("window start must be before its end")
        return self
