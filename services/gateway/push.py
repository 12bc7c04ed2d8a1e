"""What every partner webhook shares: it listens, counts and logs refused pushes, and stops.

A webhook writes where its group's declaration routes each event (as the kernel does for
handlers), so its topics and ACLs follow from that one declaration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from hub.core.handler import Emit
from hub.core.lifecycle import AsyncResource, serve_http
from hub.core.metrics import WEBHOOK_REFUSED

if TYPE_CHECKING:
    from hub.core.handler import Service
    from hub.core.outbound import RecordSink
    from hub.core.registry import Event

log = structlog.get_logger(__name__)


class PushReceiver(AsyncResource):
    """An HTTP endpoint a partner pushes to at `path`; acknowledges only what is safely on Kafka.

    A subclass reads and checks one push in `_receive`, and calls `_refuse` for a bad signature.
    """

    def __init__(
        self, sink: RecordSink, declared: Service, *, partner: str, path: str, host: str, port: int
    ) -> None:
        self._sink = sink
        self._declared = declared
        self._partner = partner
        self._path = path
        self._host = host
        self._port = port
        self.refused_signatures = 0
        """Pushes refused for a bad or stale signature (also logged, and `hub_webhook_refused`)."""
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen (port 0: a free one)."""
        app = web.Application()
        app.router.add_post(self._path, self._receive)
        self._runner, port = await serve_http(app, self._host, self._port)
        self.url = f"http://{self._host}:{port}{self._path}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def _topic_of(self, event: Event) -> str:
        """The topic the group's declaration routes `event` to (UndeclaredOutputError if none)."""
        return self._declared.topic_for(Emit("push", event))

    def _refuse(self, reason: str | None) -> None:
        """Count and log a push refused for its signature."""
        self.refused_signatures += 1
        WEBHOOK_REFUSED.labels(partner=self._partner).inc()
        log.warning(
            "webhook_refused",
            partner=self._partner,
            reason=reason,
            refused_signatures=self.refused_signatures,
        )

    async def _receive(self, request: web.Request) -> web.Response:
        raise NotImplementedError
