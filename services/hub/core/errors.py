"""Failure classes, decided in one place: transient errors retry, permanent ones dead-letter."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Literal

import aiohttp
import httpx
from aiokafka import errors as kafka_errors
from pydantic import ValidationError

Stage = Literal["decode", "validate", "handle", "publish"]


class FailureClass(StrEnum):
    """Whether trying again can help."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class HubError(Exception):
    """Base of the hub's own errors."""


class PermanentError(HubError):
    """Trying again cannot help: the message goes straight to the dead letter."""

    stage: Stage = "handle"


class TransientError(HubError):
    """A dependency is unavailable for now: retry in process, then through the retry topics."""


class EarlyEventError(TransientError):
    """The event answers something this service has not recorded yet.

    Its cause is still to be read: a crash came between producing what it answers and
    recording it, so the cause is read again, possibly after the answer. Retried through the
    retry topics only (waiting in process cannot help), and without holding its key: the
    cause is among the events behind it.
    """


class UndecodableError(PermanentError):
    """The bytes or headers cannot be read as a CloudEvent."""

    stage: Stage = "decode"


class UnknownEventTypeError(PermanentError):
    """`ce_type` names no registered event, or a version this code does not know."""

    stage: Stage = "validate"


class SchemaViolationError(PermanentError):
    """The payload does not satisfy its version's model."""

    stage: Stage = "validate"


class UndeclaredOutputError(PermanentError):
    """A handler emitted an event its service's declaration does not route: a bug to fix."""

    stage: Stage = "publish"


class InvalidStateError(PermanentError):
    """A key's stored state does not validate as its service's state model (a model changed).

    The record is fine; its key's state is not: it is dead-lettered, to replay once fixed.
    """

    stage: Stage = "handle"


class DomainRejectionError(PermanentError):
    """The event is valid but cannot apply (e.g. it does not fit the case's state)."""

    stage: Stage = "handle"


_TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def http_status_of(error: BaseException) -> int | None:
    """The status of a partner's error answer (httpx or aiohttp); None for any other error."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code
    if isinstance(error, aiohttp.ClientResponseError):
        return error.status
    return None


def classify(error: BaseException) -> FailureClass:
    """Whether `error` is worth retrying; unknown errors are permanent (a bug needs a fix)."""
    status = http_status_of(error)
    if status is not None:
        transient = status in _TRANSIENT_HTTP_STATUSES
    elif isinstance(error, kafka_errors.KafkaError):
        # A client-side timeout is not flagged retriable, but the broker may be back soon.
        transient = error.retriable or isinstance(error, kafka_errors.KafkaTimeoutError)
    else:
        transient = isinstance(
            error,
            (
                TransientError,
                TimeoutError,
                ConnectionError,
                httpx.TransportError,
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
            ),
        )
    return FailureClass.TRANSIENT if transient else FailureClass.PERMANENT


def stage_of(error: BaseException, default: Stage = "handle") -> Stage:
    """The processing stage an error belongs to."""
    if isinstance(error, PermanentError):
        return error.stage
    if isinstance(error, ValidationError):
        return "validate"
    return default


_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+|\d+",
    re.IGNORECASE,
)


def normalise_message(message: str) -> str:
    """The error message with ids and numbers replaced, so that alike failures group together."""
    return _VOLATILE.sub("#", message)[:300]


def fingerprint(error_class: str, message: str, stage: Stage) -> str:
    """A short stable id of a kind of failure: class, normalised message and stage."""
    text = f"{error_class}|{normalise_message(message)}|{stage}"
    # backslashreplace: a message may quote a lone surrogate read from a body.
    digest = hashlib.sha256(text.encode(errors="backslashreplace"))
    return digest.hexdigest()[:16]
