"""The CloudEvents HTTP binding, binary and structured mode, read into the hub's envelope.

Both modes end in the kernel's own reading of a Kafka record (`Envelope.from_record`), and the
data in the registry's validation: an event accepted here is one intake reads as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote

from pydantic import ValidationError

from hub.core.envelope import (
    CONTENT_TYPE,
    REQUIRED_HEADERS,
    STRUCTURED_PREFIX,
    Envelope,
    new_traceparent,
)
from hub.core.errors import SchemaViolationError, UndecodableError, UnknownEventTypeError
from hub.core.outbound import OutRecord
from ingress.problems import FieldError, Problem

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from hub.core.registry import Event, Registry

# Binary mode: every attribute is a `ce-` header; its value may be percent-encoded.
_HTTP_PREFIX = "ce-"
_KAFKA_NAME = re.compile(r"\bce_(\w+)")


@dataclass(frozen=True, slots=True)
class Received:
    """A valid event as received: its envelope, its data as sent, and its decoded model."""

    envelope: Envelope
    data: bytes
    event: Event
    key: str

    def record(self, topic: str) -> OutRecord:
        """The Kafka record, binary mode: the sender's attributes, the data byte for byte."""
        return OutRecord(topic, self.key.encode(), self.data, tuple(self.envelope.to_headers()))


def kafka_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """HTTP headers as the Kafka binding names them: `ce-id` is `ce_id`."""
    found: list[tuple[str, bytes]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name.startswith(_HTTP_PREFIX):
            found.append((f"ce_{name[len(_HTTP_PREFIX) :]}", unquote(value).encode()))
        elif name in {"content-type", "traceparent"}:
            found.append((name, value.encode()))
    return found


def _attribute(name: str, *, structured: bool) -> str:
    """How the sender named an attribute: `type` in a structured event, `ce-type` as a header."""
    return name if structured else f"ce-{name}"


def _invalid(detail: str, errors: list[FieldError]) -> Problem:
    return Problem(400, "Invalid CloudEvent", detail, errors)


def read_event(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    registry: Registry,
    accepted: Mapping[str, object],
) -> Received:
    """The event of one request; Problem 400 (or 415) naming every field that is wrong.

    `accepted` holds the event families this front door takes (the declaration's routes).
    """
    pairs = list(headers.items()) if hasattr(headers, "items") else list(headers)
    kafka = kafka_headers(pairs)
    content_type = next((v.decode() for n, v in kafka if n == "content-type"), CONTENT_TYPE)
    structured = content_type.startswith(STRUCTURED_PREFIX)
    if not structured and not content_type.startswith(CONTENT_TYPE):
        raise Problem(
            415,
            "Unsupported Media Type",
            f"content-type {content_type!r}: send application/json with ce-* headers (binary "
            "mode) or application/cloudevents+json (structured mode)",
        )
    present = {name for name, value in kafka if value}
    missing = [name for name in REQUIRED_HEADERS if name not in present]
    if not structured and missing:
        names = [name.replace("_", "-") for name in missing]
        raise _invalid(
            f"missing CloudEvents headers: {', '.join(names)}",
            [FieldError(field=name, message="required", type="missing") for name in names],
        )
    try:
        envelope, data = Envelope.from_record(kafka, body)
    except UndecodableError as error:
        message = str(error) if structured else _KAFKA_NAME.sub(r"ce-\1", str(error))
        named = _KAFKA_NAME.search(str(error))
        where = _attribute(named.group(1), structured=structured) if named else "envelope"
        raise _invalid(message, [FieldError(field=where, message=message)]) from error
    type_field = _attribute("type", structured=structured)
    try:
        model = registry.model_for(envelope.type)
    except UnknownEventTypeError as error:
        raise _invalid(str(error), [FieldError(field=type_field, message=str(error))]) from error
    if model.event_type not in accepted:
        message = f"{envelope.type} is not sent here; accepted: {', '.join(sorted(accepted))}"
        raise _invalid(message, [FieldError(field=type_field, message=message)])
    try:
        event = registry.decode(envelope.type, data)
    except SchemaViolationError as error:
        cause = error.__cause__
        errors = (
            [
                FieldError(
                    field=".".join(map(str, e["loc"])) or "data", message=e["msg"], type=e["type"]
                )
                for e in cause.errors()
            ]
            if isinstance(cause, ValidationError)
            else [FieldError(field="data", message=str(error))]
        )
        raise _invalid(f"{envelope.type}: the data is invalid", errors) from error
    except UndecodableError as error:
        raise _invalid(str(error), [FieldError(field="data", message=str(error))]) from error
    key = str(getattr(event, "request_id", "")) or envelope.subject or envelope.id
    envelope = replace(
        envelope,
        content_type=CONTENT_TYPE,
        subject=envelope.subject or key,
        dataschema=envelope.dataschema or model.dataschema(),
        traceparent=envelope.traceparent or new_traceparent(),
    )
    return Received(envelope, data, event, key)
