"""notify-sender as a running service: its message providers, from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from hub.core.lifecycle import AsyncResource
from hub.core.service import ServiceRuntime
from hub.core.settings import NotifySenderSettings
from hub.messages.common import Channel
from notify.providers import HttpGatewayProvider, SmtpProvider
from notify.service import build_sender

if TYPE_CHECKING:
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from notify.providers import Provider

HTTP_TIMEOUT_S = 2.0


class HttpPool(AsyncResource):
    """One HTTP connection pool shared by the gateway providers; closed with the service."""

    def __init__(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(HTTP_TIMEOUT_S))

    async def start(self) -> None:
        """Nothing to open: httpx connects on first use."""

    async def stop(self) -> None:
        """Close the pool."""
        await self.client.aclose()


def sender_runtime(
    settings: HubSettings, registry: Registry, sender: NotifySenderSettings | None = None
) -> ServiceRuntime:
    """notify-sender with the SMS and push gateways and the SMTP relay the environment names."""
    sender = sender or NotifySenderSettings()
    sms, push, smtp_host, smtp_port = (
        sender.sms_gateway_url,
        sender.push_gateway_url,
        sender.smtp_host,
        sender.smtp_port,
    )
    if not (sms and push and smtp_host and smtp_port):
        raise ValueError(f"notify-sender needs {', '.join(sender.missing())} in the environment")
    pool = HttpPool()
    providers: dict[Channel, Provider] = {
        Channel.SMS: HttpGatewayProvider(sms, pool.client),
        Channel.APP_PUSH: HttpGatewayProvider(push, pool.client),
        Channel.EMAIL: SmtpProvider(smtp_host, smtp_port, sender.mail_from),
    }
    service = build_sender(settings, providers)
    return ServiceRuntime(service, settings, registry=registry, resources=(pool,))
