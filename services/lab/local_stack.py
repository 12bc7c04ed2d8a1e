"""The whole flow on one machine: every service, every partner simulator, the SF webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.center import (
    CenterClient,
    CenterReportReceiver,
    build_center_gateway,
    declare_center_gateway,
)
from gateway.service import build_gateway_service, declare_gateway
from gateway.sf_client import SfClient
from gateway.webhook import RoutePushReceiver
from hub.bootstrap import Adapter, Declaration, all_topics, declarations
from hub.core.lifecycle import AsyncResource
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import apply_topics
from hub.messages import CATALOGUE
from hub.messages.common import Channel
from insurance.client import InsurerClient, Insurers
from insurance.service import build_service as build_insurance
from lab.simulators.insurer import InsurerKnobs, InsurerSimulator
from lab.simulators.kafka_courier import CourierKnobs, KafkaCourierSimulator
from lab.simulators.notification_sinks import HttpGatewaySink, SinkKnobs, SmtpSink
from lab.simulators.parts_supplier import PartsSupplierSimulator, SupplierKnobs
from lab.simulators.repair_center import (
    CenterKnobs,
    HttpRepairCenterSimulator,
    RepairCenterSimulator,
)
from lab.simulators.sf_courier import SfCourierSimulator, SfKnobs
from notify.providers import HttpGatewayProvider, HttpPool, SmtpProvider
from notify.service import build_sender

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatch.partners import PartnerTable
    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from notify.providers import Provider
    from tracker.sla import SlaTable

SIM_PARTNER_ID = "HUB-LOCAL"
SIM_CHECKWORD = "local-checkword-not-a-secret"
SENDER = "售后服务 <service@aftersales-hub.local>"
SIM_CENTER_SECRET = "local-center-secret-not-a-secret"  # noqa: S105 - the simulated center's
HTTP_CENTER = "sh"
"""The repair center the local stack reaches over HTTP (large appliances)."""
SIM_INSURER_SECRET = "local-insurer-key-not-a-secret"  # noqa: S105 - the simulated insurers'


@dataclass
class LocalStack(AsyncResource):
    """Every service running against simulated couriers, repair center and message sinks."""

    settings: HubSettings
    table: PartnerTable
    sf_knobs: SfKnobs = field(default_factory=SfKnobs)
    courier_knobs: dict[str, CourierKnobs] = field(default_factory=dict)

    center_knobs: CenterKnobs = field(default_factory=CenterKnobs)
    sms_knobs: SinkKnobs = field(default_factory=SinkKnobs)
    parts_knobs: SupplierKnobs = field(default_factory=SupplierKnobs)
    """Every parts supplier's stock (all in stock by default)."""
    insurer_knobs: InsurerKnobs = field(default_factory=InsurerKnobs)
    sla: SlaTable | None = None
    """The tracker's SLA table; None reads deploy/sla.yaml."""

    def __post_init__(self) -> None:
        self.http_center = HttpRepairCenterSimulator(
            self.center_knobs, webhook_secret=SIM_CENTER_SECRET
        )
        # One producer for the whole process: the services and both webhooks share it.
        self.sink = KafkaSink(self.settings, client_id="hub-local")
        self.center_reports = CenterReportReceiver(
            self.sink,
            HTTP_CENTER,
            declared=declare_center_gateway(self.settings, HTTP_CENTER),
            secret=SIM_CENTER_SECRET,
        )
        self.center_client: CenterClient | None = None
        self.center = RepairCenterSimulator(
            self.settings.kafka_bootstrap_servers, knobs=self.center_knobs
        )
        self.sms = HttpGatewaySink(self.sms_knobs)
        self.push = HttpGatewaySink()
        self.smtp = SmtpSink()
        self.http: HttpPool | None = None
        self.webhook = RoutePushReceiver(
            self.sink, declared=declare_gateway(self.settings, "sf"), checkword=SIM_CHECKWORD
        )
        self.sf = SfCourierSimulator(SIM_PARTNER_ID, SIM_CHECKWORD, knobs=self.sf_knobs)
        self.couriers = {
            courier.code: KafkaCourierSimulator(
                courier.code,
                self.settings.kafka_bootstrap_servers,
                self.courier_knobs.get(courier.code, CourierKnobs()),
            )
            for courier in self.table.couriers
            if courier.integration == "kafka"
        }
        self.suppliers = {
            supplier.code: PartsSupplierSimulator(
                supplier.code, self.settings.kafka_bootstrap_servers, self.parts_knobs
            )
            for supplier in self.table.parts_suppliers
        }
        self.insurers = {
            insurer.code: InsurerSimulator(insurer.code, SIM_INSURER_SECRET, self.insurer_knobs)
            for insurer in self.table.insurers
        }
        self.insurer_clients: Insurers | None = None
        self.client: SfClient | None = None
        self.runtimes: list[ServiceRuntime] = []

    async def start(self) -> None:
        """Apply topics, start the partners, then the services."""
        await apply_topics(
            self.settings.kafka_bootstrap_servers, all_topics(self.settings, self.table, self.sla)
        )
        await self.sink.start()
        await self.webhook.start()
        self.sf.webhook_url = self.webhook.url
        await self.sf.start()
        self.client = SfClient(self.sf.url, SIM_PARTNER_ID, SIM_CHECKWORD)
        await self.client.start()
        for courier in self.couriers.values():
            await courier.start()
        for supplier in self.suppliers.values():
            await supplier.start()
        for partner in (self.center, self.sms, self.push, self.smtp):
            await partner.start()
        await self.center_reports.start()
        self.http_center.webhook_url = self.center_reports.url
        await self.http_center.start()
        self.center_client = CenterClient(self.http_center.url)
        await self.center_client.start()
        for insurer in self.insurers.values():
            await insurer.start()
        self.insurer_clients = Insurers(
            {
                code: InsurerClient(code, insurer.url, SIM_INSURER_SECRET)
                for code, insurer in self.insurers.items()
            }
        )
        await self.insurer_clients.start()
        self.http = HttpPool(timeout_s=2.0)
        await self.http.start()
        providers: dict[Channel, Provider] = {
            Channel.SMS: HttpGatewayProvider(self.sms.url, self.http),
            Channel.APP_PUSH: HttpGatewayProvider(self.push.url, self.http),
            Channel.EMAIL: SmtpProvider("127.0.0.1", self.smtp.port, SENDER),
        }
        services = [
            self._with_adapters(declaration, providers)
            for declaration in declarations(self.settings, self.table, self.sla)
            # The HTTP front door consumes nothing: the stack's producers write for it.
            if declaration.consumes
        ]
        self.runtimes = [
            ServiceRuntime(service, self.settings, registry=CATALOGUE, sink=self.sink)
            for service in services
        ]
        for runtime in self.runtimes:
            await runtime.start()

    def _with_adapters(
        self, declaration: Declaration, providers: Mapping[Channel, Provider]
    ) -> Service:
        """The declared service with the simulators' adapters in place of the real partners."""
        match declaration.adapter:
            case Adapter.NONE:
                return declaration.service
            case Adapter.NOTIFICATION_PROVIDERS:
                return build_sender(self.settings, providers)
            case Adapter.COURIER_API if declaration.partner == "sf" and self.client:
                return build_gateway_service(self.settings, self.client, "sf")
            case Adapter.CENTER_API if declaration.partner == HTTP_CENTER and self.center_client:
                return build_center_gateway(self.settings, HTTP_CENTER, self.center_client)
            case Adapter.INSURER_API if self.insurer_clients:
                return build_insurance(self.settings, self.insurer_clients, self.table)
        raise ValueError(f"the local stack simulates no partner for {declaration.group}")

    async def restart(self, group: str) -> None:
        """Stop one service (draining it) and start a new instance on the same state."""
        old = next(runtime for runtime in self.runtimes if runtime.service.group == group)
        await old.stop()
        new = ServiceRuntime(old.service, self.settings, registry=CATALOGUE, sink=self.sink)
        await new.start()
        self.runtimes[self.runtimes.index(old)] = new

    async def stop(self) -> None:
        """Stop the services first (draining them), then the partners."""
        for runtime in reversed(self.runtimes):
            await runtime.stop()
        for courier in self.couriers.values():
            await courier.stop()
        for supplier in self.suppliers.values():
            await supplier.stop()
        if self.center_client is not None:
            await self.center_client.stop()
        if self.insurer_clients is not None:
            await self.insurer_clients.stop()
        for insurer in self.insurers.values():
            await insurer.stop()
        for partner in (self.http_center, self.center_reports, self.center, self.sms, self.push,
                        self.smtp):  # fmt: skip
            await partner.stop()
        if self.http is not None:
            await self.http.stop()
        if self.client is not None:
            await self.client.stop()
        await self.sf.stop()
        await self.webhook.stop()
        await self.sink.stop()
