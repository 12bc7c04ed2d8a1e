"""structlog configuration: JSON when not a TTY, console otherwise, context first."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

import structlog

if TYPE_CHECKING:
    from structlog.typing import Processor

LogFormat = Literal["auto", "json", "console"]


def configure_logging(level: str = "INFO", log_format: LogFormat = "auto") -> None:
    """Configure structlog and the standard library's root logger once per process."""
    renderer_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if renderer_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
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
    # Libraries (aiokafka, FastStream) log through the standard library: warnings and up only.
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, force=True)
    # FastStream reports start-up and assignments at INFO and warns that topic creation is off
    # (on purpose: `hub topics apply` owns topics); the hub logs its own lifecycle instead.
    logging.getLogger("faststream").setLevel(max(numeric_level, logging.ERROR))
