"""The insurance group as a running service: the insurers' API clients, from the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hub.core.service import ServiceRuntime
from insurance.client import InsurerClient, Insurers
from insurance.service import build_service

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatch.partners import PartnerTable
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings


def insurers_from_env(table: PartnerTable, environ: Mapping[str, str] = os.environ) -> Insurers:
    """A client per insurer of the partner table; ValueError naming what the environment lacks."""
    missing = [
        name
        for insurer in table.insurers
        for name in (insurer.api_url_env, insurer.secret_env)
        if not environ.get(name)
    ]
    if missing:
        raise ValueError(
            f"the insurance group needs {', '.join(missing)} in the environment "
            "(see deploy/partners.yaml)"
        )
    return Insurers(
        {
            insurer.code: InsurerClient(
                insurer.code, environ[insurer.api_url_env], environ[insurer.secret_env]
            )
            for insurer in table.insurers
        }
    )


def insurance_runtime(
    settings: HubSettings, table: PartnerTable, registry: Registry
) -> ServiceRuntime:
    """insurance: the service and the insurers' clients, started and stopped with it."""
    insurers = insurers_from_env(table)
    service = build_service(settings, insurers, table)
    return ServiceRuntime(service, settings, registry=registry, resources=(insurers,))
