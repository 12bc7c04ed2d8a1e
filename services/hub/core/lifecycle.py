"""Things that are started and stopped: one base makes each usable as `async with`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

    from aiohttp import web


class AsyncResource:
    """Has `start()` and `stop()`; `async with` calls them."""

    async def start(self) -> None:
        """Acquire what the resource needs."""

    async def stop(self) -> None:
        """Release it."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_http(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve `app` (port 0: a free one); returns the runner to clean up and the bound port."""
    from aiohttp import web  # noqa: PLC0415 - only HTTP partners and webhooks need aiohttp

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])
