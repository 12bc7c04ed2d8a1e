"""notify-sender as a running service: its message providers, from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.service import ServiceRuntime
from hub.core.settings import NotifySenderSettings
from hub.messages.common import Channel
from notify.providers import HttpGatewayProvider, HttpPool, SmtpProvider
from notify.service import build_sender

if TYPE_CHECKING:
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from notify.providers import Provider

HTTP_TIMEOUT_S = 2.0


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
    pool = HttpPool(HTTP_TIMEOUT_S)
    providers: dict[Channel, Provider] = {
        Channel.SMS: HttpGatewayProvider(sms, pool),
        Channel.APP_PUSH: HttpGatewayProvider(push, pool),
        Channel.EMAIL: SmtpProvider(
            smtp_host, smtp_port, sender.mail_from, workers=settings.partner_concurrency
        ),
    }
    service = build_sender(settings, providers)
    return ServiceRuntime(service, settings, registry=registry, resources=(pool,))
