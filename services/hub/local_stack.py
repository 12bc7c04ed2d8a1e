"""The whole inbound flow on one machine: services, courier simulators and the SF webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from dispatch.service import build_service as build_dispatch
from gateway.service import build_gateway_service
from gateway.sf_client import SfClient
from gateway.webhook import RoutePushReceiver
from hub.bootstrap import all_topics
from hub.core.service import KafkaSink, ServiceRuntime
from hub.core.topics import apply_topics
from hub.messages import CATALOGUE
from intake.service import build_service as build_intake
from simulators.kafka_courier import CourierKnobs, KafkaCourierSimulator
from simulators.sf_courier import SfCourierSimulator, SfKnobs

if TYPE_CHECKING:
    from types import TracebackType

    from dispatch.partners import PartnerTable
    from hub.core.settings import HubSettings

SIM_PARTNER_ID = "HUB-LOCAL"
SIM_CHECKWORD = "local-checkword-not-a-secret"


@dataclass
class LocalStack:
    """intake, dispatch and gateway-sf running against simulated couriers, in this process."""

    settings: HubSettings
    table: PartnerTable
    sf_knobs: SfKnobs = field(default_factory=SfKnobs)
    courier_knobs: dict[str, CourierKnobs] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sink = KafkaSink(self.settings, client_id="hub-webhook-sf")
        self.webhook = RoutePushReceiver(self.sink)
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
        self.client: SfClient | None = None
        self.runtimes: list[ServiceRuntime] = []

    async def start(self) -> None:
        """Apply topics, start the partners, then the services."""
        await apply_topics(
            self.settings.kafka_bootstrap_servers, all_topics(self.settings, self.table)
        )
        await self.sink.start()
        await self.webhook.start()
        self.sf.webhook_url = self.webhook.url
        await self.sf.start()
        self.client = SfClient(self.sf.url, SIM_PARTNER_ID, SIM_CHECKWORD)
        await self.client.open()
        for courier in self.couriers.values():
            await courier.start()
        services = [
            build_intake(self.settings),
            build_dispatch(self.settings, self.table),
            build_gateway_service(self.settings, self.client),
        ]
        self.runtimes = [
            ServiceRuntime(service, self.settings, registry=CATALOGUE) for service in services
        ]
        for runtime in self.runtimes:
            await runtime.start()

    async def stop(self) -> None:
        """Stop the services first (draining them), then the partners."""
        for runtime in reversed(self.runtimes):
            await runtime.stop()
        for courier in self.couriers.values():
            await courier.stop()
        if self.client is not None:
            await self.client.close()
        await self.sf.stop()
        await self.webhook.stop()
        await self.sink.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
