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
    sink = KafkaSink(settings, client_id=f"hub-webhook-{courier.code}")
    webhook = RoutePushReceiver(sink, courier=courier.code, host="0.0.0.0", port=webhook_port)  # noqa: S104 - couriers push from outside
    service = build_gateway_service(settings, client, courier.code)
    # One producer for the process: the webhook's and the service's records share it.
    return ServiceRuntime(
        service, settings, registry=registry, sink=sink, resources=(sink, client, webhook)
    )


def center_gateway_runtime(
    settings: HubSettings, center: RepairCenter, registry: Registry, webhook_port: int
) -> ServiceRuntime:
    """gateway-center-<code>: the service, the center's API client and its report webhook."""
    url = os.environ.get(center.api_url_env or "")
    if not url:
        raise ValueError(
            f"repair center {center.code} needs {center.api_url_env} in the environment "
            "(see deploy/partners.yaml)"
        )
    client = CenterClient(url, partner=f"center-{center.code}")
    sink = KafkaSink(settings, client_id=f"hub-webhook-center-{center.code}")
    reports = CenterReportReceiver(sink, center.code, host="0.0.0.0", port=webhook_port)  # noqa: S104 - centers push from outside
    service = build_center_gateway(settings, center.code, client)
    return ServiceRuntime(
        service, settings, registry=registry, sink=sink, resources=(sink, client, reports)
    )
