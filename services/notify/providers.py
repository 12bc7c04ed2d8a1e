"""Notification providers behind one interface: an SMS or push HTTP gateway, and SMTP e-mail."""

from __future__ import annotations

import asyncio
import smtplib
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

import aiohttp

from hub.core.errors import PermanentError, TransientError
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import counted_send

if TYPE_CHECKING:
    from hub.messages.repair import NotificationRequestedV1

SMTP_TEMPORARY = range(400, 500)


def message_id_for(dedupe_key: str) -> str:
    """An RFC 5322 Message-ID carrying the dedupe key (a colon is not allowed in its left part)."""
    return f"<{dedupe_key.replace(':', '.')}@aftersales-hub>"


class Provider(Protocol):
    """Delivers one notification; returns the provider's message id."""

    async def send(self, request: NotificationRequestedV1) -> str:
        """Deliver `request` or raise (transient errors are retried by the kernel)."""


class HttpPool(AsyncResource):
    """One HTTP connection pool shared by the gateway providers; closed with the service.

    aiohttp, not httpx: at a few hundred notifications a second httpx's pool took 2 to 3 ms
    of CPU per request (it checks every idle connection's socket on each request), aiohttp
    about 0.5 ms; notify-sender was the hub's slowest group behind it.
    """

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session."""
        if self._session is None:
            raise RuntimeError("the HTTP pool is not started")
        return self._session

    async def start(self) -> None:
        """Open the session (it needs the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )

    async def stop(self) -> None:
        """Close the pool."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class HttpGatewayProvider:
    """An SMS or app-push gateway that takes JSON and dedupes by our `client_msg_id`."""

    def __init__(self, url: str, pool: HttpPool) -> None:
        self._url = url
        self._pool = pool

    @counted_send
    async def send(self, request: NotificationRequestedV1) -> str:
        """POST the message; 4xx is permanent, 5xx/429/timeouts are transient (classify)."""
        body = {
            "to": request.address,
            "title": request.subject,
            "text": request.body,
            "client_msg_id": request.dedupe_key,
        }
        async with self._pool.session.post(self._url, json=body) as response:
            response.raise_for_status()
            answer = await response.json()
        return str(answer["message_id"])


class SmtpProvider:
    """E-mail through an SMTP server; the Message-ID carries our dedupe key."""

    def __init__(
        self, host: str, port: int, sender: str, timeout_s: float = 5.0, workers: int = 32
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout_s = timeout_s
        # Its own threads: the loop's default pool has cpu + 4 (6 here), which held
        # notify-sender's lanes to six e-mails at a time, each a whole SMTP conversation.
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub-smtp")

    @counted_send
    async def send(self, request: NotificationRequestedV1) -> str:
        """Send one e-mail in a worker thread (smtplib blocks)."""
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = request.address
        message["Subject"] = request.subject
        message["Message-ID"] = message_id_for(request.dedupe_key)
        message.set_content(request.body)
        await asyncio.get_running_loop().run_in_executor(self._threads, self._deliver, message)
        return str(message["Message-ID"])

    def _deliver(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                smtp.send_message(message)
        except smtplib.SMTPResponseException as error:
            kind = TransientError if error.smtp_code in SMTP_TEMPORARY else PermanentError
            raise kind(f"SMTP {error.smtp_code}: {error.smtp_error!r}") from error
        except smtplib.SMTPRecipientsRefused as error:
            raise PermanentError(f"SMTP refused the recipient: {error.recipients}") from error
        except OSError as error:  # connection refused, reset, timed out
            raise TransientError(f"SMTP server unreachable: {error}") from error
