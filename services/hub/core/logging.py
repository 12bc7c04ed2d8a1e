"""structlog configuration: JSON when not a TTY, console otherwise, context first."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor

LogFormat = Literal["auto", "json", "console"]

PRIVATE_KEYS = frozenset({"name", "phone", "mobile", "email", "street", "address", "contact"})
PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
# Every PHONE match is a match of this; starting with a literal, it is searched ten times faster.
_PHONE_HINT = re.compile(r"1[3-9]\d{9}")

_RECORD_CONTEXT: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "hub_record_log_context", default=None
)


def bind_record(context: dict[str, object]) -> contextvars.Token[dict[str, object] | None]:
    """Make `context` part of every line logged until `unbind_record`: the record's keys.

    One context variable for the whole set: binding seven of structlog's costs per record.
    """
    return _RECORD_CONTEXT.set(context)


def unbind_record(token: contextvars.Token[dict[str, object] | None]) -> None:
    """Forget what `bind_record` bound."""
    _RECORD_CONTEXT.reset(token)


def merge_record_context(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Structlog processor: the record's context (`bind_record`), where the line sets no value."""
    context = _RECORD_CONTEXT.get()
    if context is not None:
        for key, value in context.items():
            event.setdefault(key, value)
    return event


def mask_text(text: str) -> str:
    """Mainland mobile numbers in free text, masked to 138****8000."""
    return PHONE.sub(r"\1****\2", text)


def mask_value(value: object) -> object:
    """A private value reduced to its first character (enough to tell two apart, no more)."""
    text = str(value)
    return f"{text[:1]}***" if text else text


def mask_pii(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Structlog processor: private fields masked, phone numbers in any text masked."""
    texts: list[str] = []
    for key, value in event.items():
        if key in PRIVATE_KEYS and value is not None:
            event[key] = mask_value(value)
        elif isinstance(value, str):
            texts.append(key)
    # One quick search over every text of the line; most lines have no number to mask.
    if texts and _PHONE_HINT.search("\x00".join([event[key] for key in texts])) is not None:
        for key in texts:
            if _PHONE_HINT.search(event[key]) is not None:
                event[key] = mask_text(event[key])
    return event


class _Second:
    """The text of the current second, made once a second."""

    number: int = -1
    text: str = ""


def add_timestamp(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Structlog processor: `timestamp` exactly as `TimeStamper(fmt="iso", utc=True)` writes it.

    The same clock, floored to the microsecond, as `datetime.now`; the date and time of day
    are formatted once a second instead of once a line.
    """
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    if second != _Second.number:
        text = datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat()
        _Second.number, _Second.text = second, text
    # isoformat leaves out a fraction of zero.
    event["timestamp"] = f"{_Second.text}.{micro:06d}Z" if micro else f"{_Second.text}Z"
    return event


class _ReusedEncoder:
    """A JSONRenderer serializer: `json.dumps` with one encoder made once, not once a line."""

    def __init__(self) -> None:
        self._encoder: json.JSONEncoder | None = None

    def __call__(self, obj: object, **options: Any) -> str:  # noqa: ANN401 - json.dumps options
        """What `json.dumps(obj, **options)` returns (the renderer passes the same options)."""
        if self._encoder is None:
            self._encoder = json.JSONEncoder(**options)
        return self._encoder.encode(obj)


def configure_logging(level: str = "INFO", log_format: LogFormat = "auto") -> None:
    """Configure structlog, and route the standard library's loggers through it, once per process.

    Libraries (aiokafka, FastStream, asyncio, aiohttp) and Python's warnings then come out in
    the same format as the hub's own events: one JSON object a line when not on a TTY.
    """
    renderer_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        merge_record_context,
        structlog.contextvars.merge_contextvars,
        mask_pii,
        structlog.processors.add_log_level,
        add_timestamp,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if renderer_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(_ReusedEncoder(), ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise TypeError(f"unknown log level: {level!r}")
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The hub's own events skip the standard library (it costs per line); the libraries' records
    # get the same processors, plus the logger's name, through one formatter on the root.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    # Libraries log warnings and up only: their INFO is start-up chatter the hub says itself.
    logging.basicConfig(level=max(numeric_level, logging.WARNING), handlers=[handler], force=True)
    logging.captureWarnings(capture=True)  # ResourceWarning and friends become log lines too
    # FastStream reports start-up and assignments at INFO and warns that topic creation is off
    # (on purpose: `hub topics apply` owns topics); the hub logs its own lifecycle instead.
    logging.getLogger("faststream").setLevel(max(numeric_level, logging.ERROR))
