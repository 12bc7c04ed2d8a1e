"""notify-sender as a running service: its message providers, from the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx

from hub.core.lifecycle import AsyncResource
from hub.core.service import ServiceRuntime
from hub.messages.common import Channel
from notify.providers import HttpGatewayProvider, SmtpProvider
from notify.service import build_sender

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from notify.providers import Provider

SENDER_ENV = ("HUB_SMS_GATEWAY_URL", "HUB_PUSH_GATEWAY_URL", "HUB_SMTP_HOST", "HUB_SMTP_PORT")
MAIL_FROM_ENV = "HUB_MAIL_FROM"
DEFAULT_MAIL_FROM = "售后服务 <service@aftersales-hub.local>"
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
    settings: HubSettings, registry: Registry, environ: Mapping[str, str] = os.environ
) -> ServiceRuntime:
    """notify-sender with the SMS and push gateways and the SMTP relay the environment names."""
    missing = [name for name in SENDER_ENV if not environ.get(name)]
    if missing:
        raise ValueError(f"notify-sender needs {', '.join(missing)} in the environment")
    sms, push, smtp_host, smtp_port = (environ[name] for name in SENDER_ENV)
    pool = HttpPool()
    providers: dict[Channel, Provider] = {
        Channel.SMS: HttpGatewayProvider(sms, pool.client),
        Channel.APP_PUSH: HttpGatewayProvider(push, pool.client),
        Channel.EMAIL: SmtpProvider(
            smtp_host, int(smtp_port), environ.get(MAIL_FROM_ENV, DEFAULT_MAIL_FROM)
        ),
    }
    service = build_sender(settings, providers)
    return ServiceRuntime(service, settings, registry=registry, resources=(pool,))
