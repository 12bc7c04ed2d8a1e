"""The one list of the hub's consumer groups: everything that needs the topology reads it here.

Topic declarations, ACLs, `hub run`, the local stack, the demo, the chaos and bench runners all
derive from `declarations()`; adding an output to a service's declaration changes them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from dispatch.partners import load_partners
from dispatch.service import build_service as build_dispatch
from gateway.center import declare_center_gateway
from gateway.service import declare_gateway
from hub.core.topics import Subscription, declare
from ingress.service import declare_ingress
from insurance.service import declare_insurance
from intake.service import build_service as build_intake
from notify.service import build_service as build_notify
from notify.service import declare_sender
from repair.service import build_service as build_repair
from tracker.service import build_scores_service
from tracker.service import build_service as build_tracker

if TYPE_CHECKING:
    from dispatch.partners import PartnerTable
    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from hub.core.topics import TopicSpec
    from tracker.sla import SlaTable


class Adapter(StrEnum):
    """The edge adapters a group needs beside the kernel; they supply its handlers."""

    NONE = "none"
    """Pure handlers: the declaration's service runs as it is."""
    COURIER_API = "courier-api"
    """An HTTP courier's API client, and its route-push webhook (which writes its events)."""
    CENTER_API = "center-api"
    """An HTTP repair center's API client, and its report webhook (which writes its events)."""
    NOTIFICATION_PROVIDERS = "notification-providers"
    """The SMS and push gateways and the SMTP relay."""
    INSURER_API = "insurer-api"
    """The freight insurers' API clients (every insurer of the partner table)."""
    HTTP_INGRESS = "http-ingress"
    """The HTTP front door: it consumes nothing; backends' CloudEvents are its input."""


class Runnable(Protocol):
    """What `hub run` runs: until SIGTERM or Ctrl-C, draining first."""

    async def serve(self) -> None:
        """Run until asked to stop."""


@dataclass(frozen=True, slots=True)
class Declaration:
    """One consumer group: its service (group, inputs, routed outputs, timers) and its adapter."""

    service: Service
    adapter: Adapter = Adapter.NONE
    partner: str | None = None
    """The courier or repair center of a gateway."""

    @property
    def group(self) -> str:
        """The consumer group (and the name `hub run` takes)."""
        return self.service.group

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every topic the group's process writes (its own retry and timer topics aside).

        An adapter's webhook writes where the service's declaration routes its events.
        """
        return self.service.outputs

    @property
    def consumes(self) -> bool:
        """Whether the group reads topics (the ingress reads HTTP requests instead)."""
        return bool(self.service.all_inputs)


def declarations(
    settings: HubSettings, table: PartnerTable | None = None, sla: SlaTable | None = None
) -> list[Declaration]:
    """Every consumer group of the hub, for the partners of `table` and the SLAs of `sla`."""
    table = table or load_partners()
    couriers = [c.code for c in table.couriers if c.integration == "http"]
    centers = [c.code for c in table.repair_centers if c.integration == "http"]
    return [
        Declaration(build_intake(settings)),
        Declaration(build_dispatch(settings, table)),
        Declaration(build_repair(settings, table)),
        Declaration(build_notify(settings)),
        Declaration(build_tracker(settings, sla)),
        Declaration(build_scores_service(settings)),
        Declaration(declare_sender(settings), Adapter.NOTIFICATION_PROVIDERS),
        *(
            Declaration(declare_gateway(settings, code), Adapter.COURIER_API, code)
            for code in couriers
        ),
        *(
            Declaration(declare_center_gateway(settings, code), Adapter.CENTER_API, code)
            for code in centers
        ),
        Declaration(declare_insurance(settings), Adapter.INSURER_API),
        Declaration(declare_ingress(settings), Adapter.HTTP_INGRESS),
    ]


def declaration_of(
    group: str, settings: HubSettings, table: PartnerTable | None = None
) -> Declaration:
    """The declaration of `group`; ValueError naming the known groups when there is none."""
    known = declarations(settings, table)
    for declaration in known:
        if declaration.group == group:
            return declaration
    names = ", ".join(declaration.group for declaration in known)
    raise ValueError(f"unknown service {group!r}; known: {names}")


def runtime_for(
    declaration: Declaration,
    settings: HubSettings,
    *,
    webhook_port: int,
    table: PartnerTable | None = None,
) -> Runnable:
    """A declared group ready to run, its adapters built from the settings and environment.

    ValueError names what the environment lacks (a partner's URL or credentials).
    """
    # Each arm imports only what its process runs: a consumer never loads FastAPI or uvicorn
    # (a few MiB of every process's resident memory).
    from hub.messages import CATALOGUE  # noqa: PLC0415

    table = table or load_partners()
    code = declaration.partner or ""
    match declaration.adapter:
        case Adapter.NONE:
            from hub.core.service import ServiceRuntime  # noqa: PLC0415

            return ServiceRuntime(declaration.service, settings, registry=CATALOGUE)
        case Adapter.NOTIFICATION_PROVIDERS:
            from notify.bootstrap import sender_runtime  # noqa: PLC0415

            return sender_runtime(settings, CATALOGUE)
        case Adapter.COURIER_API:
            from gateway.bootstrap import gateway_runtime  # noqa: PLC0415

            return gateway_runtime(settings, table.courier(code), CATALOGUE, webhook_port)
        case Adapter.CENTER_API:
            from gateway.bootstrap import center_gateway_runtime  # noqa: PLC0415

            return center_gateway_runtime(settings, table.center(code), CATALOGUE, webhook_port)
        case Adapter.INSURER_API:
            from insurance.bootstrap import insurance_runtime  # noqa: PLC0415

            return insurance_runtime(settings, table, CATALOGUE)
        case Adapter.HTTP_INGRESS:
            from ingress.app import IngressRuntime  # noqa: PLC0415

            return IngressRuntime(settings, declaration.service, CATALOGUE)


def all_topics(
    settings: HubSettings, table: PartnerTable | None = None, sla: SlaTable | None = None
) -> list[TopicSpec]:
    """Every topic the declared groups read or write, with their retry, dead-letter and replay."""
    declared = declarations(settings, table, sla)
    subscriptions = [Subscription(d.group, d.service.all_inputs) for d in declared if d.consumes]
    return declare(settings, subscriptions, [t for d in declared for t in d.outputs])
