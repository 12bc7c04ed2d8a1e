"""Running a simulator as its own process: started, then served until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import structlog

from hub.core.logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.lifecycle import AsyncResource

log = structlog.get_logger(__name__)


async def serve_until_signalled(
    resource: AsyncResource, describe: Callable[[], dict[str, object]]
) -> None:
    """Start `resource`, log what `describe` says about it, stop it on SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with resource:
        log.info("simulator_serving", **describe())
        await stopping.wait()
    log.info("simulator_stopped", **describe())


def run(resource: AsyncResource, describe: Callable[[], dict[str, object]]) -> None:
    """A simulator's process entry point: console logs, then serve until signalled."""
    configure_logging("INFO", "console")
    asyncio.run(serve_until_signalled(resource, describe))
