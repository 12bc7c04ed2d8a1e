"""The HTTP face of a `hub run` process: /metrics, /healthz and /readyz.

aiohttp rather than FastStream's ASGI app: `hub run` drives FastStream's own (non-ASGI) app with
its signal handling, and going ASGI would put every service under uvicorn for three small
routes; aiohttp already serves the partner webhooks in the same processes.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Protocol

import structlog
from aiohttp import web

from hub.core.lifecycle import AsyncResource, serve_http
from hub.core.metrics import registry_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 3.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Checked(Protocol):
    """Something that says whether it is ready, check by check."""

    async def readiness(self) -> dict[str, bool]:
        """Each check's name and whether it passed."""
        ...


class OpsServer(AsyncResource):
    """Serves the process's metrics and health on `HUB_HTTP_HOST:HUB_HTTP_PORT`."""

    def __init__(self, settings: HubSettings, components: Sequence[Checked]) -> None:
        self._host = settings.http_host
        self._port = settings.http_port
        self._components = components
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen (port 0: a free one, logged)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner, self.port = await serve_http(app, self._host, self._port)
        log.info("http_serving", host=self._host, port=self.port,
                 paths=["/metrics", "/healthz", "/readyz"])  # fmt: skip

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=registry_text(), headers={"Content-Type": PROMETHEUS_TEXT})

    async def _healthz(self, _request: web.Request) -> web.Response:
        # The event loop answered: the process is alive. Dependencies are /readyz's business.
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks: dict[str, bool] = {}
        for component in self._components:
            try:
                result = await asyncio.wait_for(component.readiness(), READY_TIMEOUT_S)
            except TimeoutError:
                result = {"timeout": False}
            checks.update(result)
        ready = bool(checks) and all(checks.values())
        return web.Response(
            text=json.dumps({"ready": ready, "checks": checks}),
            status=200 if ready else 503,
            content_type="application/json",
        )
