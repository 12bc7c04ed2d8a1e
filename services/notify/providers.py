"""Notification providers behind one interface: an SMS or push HTTP gateway, and SMTP e-mail."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import TYPE_CHECKING, Protocol

from hub.core.errors import PermanentError, TransientError
from hub.core.metrics import counted_send

if TYPE_CHECKING:
    import httpx

    from hub.messages.repair import NotificationRequestedV1

SMTP_TEMPORARY = range(400, 500)


def message_id_for(dedupe_key: str) -> str:
    """An RFC 5322 Message-ID carrying the dedupe key (a colon is not allowed in its left part)."""
    return f"<{dedupe_key.replace(':', '.')}@aftersales-hub>"


class Provider(Protocol):
    """Delivers one notification; returns the provider's message id."""

    async def send(self, request: NotificationRequestedV1) -> str:
        """Deliver `request` or raise (transient errors are retried by the kernel)."""


class HttpGatewayProvider:
    """An SMS or app-push gateway that takes JSON and dedupes by our `client_msg_id`."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._client = client

    @counted_send
    async def send(self, request: NotificationRequestedV1) -> str:
        """POST the message; 4xx is permanent, 5xx/429/timeouts are transient (classify)."""
        response = await self._client.post(
            self._url,
            json={
                "to": request.address,
                "title": request.subject,
                "text": request.body,
                "client_msg_id": request.dedupe_key,
            },
        )
        response.raise_for_status()
        return str(response.json()["message_id"])


class SmtpProvider:
    """E-mail through an SMTP server; the Message-ID carries our dedupe key."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 5.0) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout_s = timeout_s

    @counted_send
    async def send(self, request: NotificationRequestedV1) -> str:
        """Send one e-mail in a worker thread (smtplib blocks)."""
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = request.address
        message["Subject"] = request.subject
        message["Message-ID"] = message_id_for(request.dedupe_key)
        message.set_content(request.body)
        await asyncio.to_thread(self._deliver, message)
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
