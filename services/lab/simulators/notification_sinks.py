"""Notification sinks as real servers: an SMS/app-push HTTP gateway and an SMTP server."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiosmtpd.controller import Controller

from hub.core.lifecycle import AsyncResource, serve_http
from lab.harness.kafka import free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class SinkKnobs:
    """How the gateway misbehaves."""

    error_rate: float = 0.0
    """HTTP 503: transient."""
    seed: int | None = None


class HttpGatewaySink(AsyncResource):
    """An SMS or app-push gateway on 127.0.0.1; idempotent on `client_msg_id`, as real ones are."""

    def __init__(self, knobs: SinkKnobs | None = None) -> None:
        self.knobs = knobs or SinkKnobs()
        self._random = random.Random(self.knobs.seed)  # noqa: S311 - a simulation
        self.delivered: dict[str, dict[str, Any]] = {}
        """Delivered messages by client_msg_id: what the customer's phone shows."""
        self.requests = 0
        self._ids: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/send", self._send)
        self._runner, port = await serve_http(app)
        self.url = f"http://127.0.0.1:{port}/send"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self._random.random() < self.knobs.error_rate:
            return web.Response(status=503, text="gateway busy")
        body = await request.json()
        if not body.get("to") or not body.get("client_msg_id"):
            return web.json_response({"error": "to and client_msg_id are required"}, status=400)
        key = str(body["client_msg_id"])
        if key not in self._ids:
            self._ids[key] = uuid.uuid4().hex
            self.delivered[key] = body
        return web.json_response({"message_id": self._ids[key]})


class SmtpSink(AsyncResource):
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it is handed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def by_message_id(self) -> Counter[str]:
        """How many times each Message-ID arrived (more than 1 would be a duplicate e-mail)."""
        return Counter(str(message["Message-ID"]) for message in self.messages)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message."""
        del server, session
        self.messages.append(message_from_bytes(envelope.content or b""))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        """Start the server thread."""
        self._controller.start()

    async def stop(self) -> None:
        """Stop the server thread."""
        self._controller.stop()
