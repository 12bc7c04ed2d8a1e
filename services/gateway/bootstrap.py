"""A courier gateway as a running service: its API client and webhook, from the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gateway.center import CenterClient, CenterReportReceiver, build_center_gateway
from gateway.service import build_gateway_service
from gateway.sf_client import SfClient
from gateway.webhook import RoutePushReceiver
from hub.core.service import KafkaSink, ServiceRuntime

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatch.partners import Courier, RepairCenter
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings


def sf_client_from_env(courier: Courier, environ: Mapping[str, str] = os.environ) -> SfClient:
    """The SF client, configured from the variables the partner table names; or what is missing."""
    names = (courier.api_url_env, courier.partner_id_env, courier.checkword_env)
    missing = [name or "?" for name in names if not name or not environ.get(name)]
    if missing:
        raise ValueError(
            f"courier {courier.code} needs {', '.join(missing)} in the environment "
            "(see deploy/partners.yaml)"
        )
    url, partner_id, checkword = (environ[name] for name in names if name)
    return SfClient(url, partner_id, checkword)


def gateway_runtime(
    settings: HubSettings, courier: Courier, registry: Registry, webhook_port: int
) -> ServiceRuntime:
    """gateway-<courier>: the service, its API client and its route-push webhook together."""
    client = sf_client_from_env(courier)
    # Present: sf_client_from_env refuses to start without it. SF signs pushes as API calls.
    checkword = os.environ[courier.checkword_env or ""]
    sink = KafkaSink(settings, client_id=f"hub-webhook-{courier.code}")
    service = build_gateway_service(settings, client, courier.code)
    webhook = RoutePushReceiver(
        sink,
        declared=service,
        checkword=checkword,
        courier=courier.code,
        host="0.0.0.0",  # noqa: S104 - couriers push from outside
        port=webhook_port,
    )
    # One producer for the process: the webhook's and the service's records share it.
    return ServiceRuntime(
        service, settings, registry=registry, sink=sink, resources=(sink, client, webhook)
    )


def center_gateway_runtime(
    settings: HubSettings, center: RepairCenter, registry: Registry, webhook_port: int
) -> ServiceRuntime:
    """gateway-center-<code>: the service, the center's API client and its report webhook."""
    names = (center.api_url_env, center.webhook_secret_env)
    missing = [name or "?" for name in names if not name or not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"repair center {center.code} needs {', '.join(missing)} in the environment "
            "(see deploy/partners.yaml)"
        )
    url, secret = (os.environ[name] for name in names if name)
    client = CenterClient(url, partner=f"center-{center.code}")
    sink = KafkaSink(settings, client_id=f"hub-webhook-center-{center.code}")
    service = build_center_gateway(settings, center.code, client)
    reports = CenterReportReceiver(
        sink,
        center.code,
        declared=service,
        secret=secret,
        host="0.0.0.0",  # noqa: S104 - centers push from outside
        port=webhook_port,
    )
    return ServiceRuntime(
        service, settings, registry=registry, sink=sink, resources=(sink, client, reports)
    )
