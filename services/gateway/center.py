"""HTTP repair centers: tickets from Kafka become API calls; pushed reports come back to Kafka.

A pushed report carries `X-Hub-Timestamp` and `X-Hub-Signature` (HMAC-SHA256 under the
center's secret, see `gateway.signing`); one that fails the check is refused with 401.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from aiohttp import web

from gateway.push import PushReceiver
from gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, center_refusal
from hub.core.errors import HubError
from hub.core.handler import Decision, Handler, Route, Service, routes
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import MeteredTransport
from hub.core.outbound import event_record
from hub.core.topics import center_events_topic, center_tickets_topic
from hub.messages import CATALOGUE
from hub.messages.parts import PartsReadyV1, RepairWithdrawnV1
from hub.messages.repair import (
    CenterDiagnosedV1,
    CenterItemReceivedV1,
    CenterVisitReportedV1,
    CenterWorkCompletedV1,
    QuoteDecisionV1,
    RepairTicketV1,
)

if TYPE_CHECKING:
    from datetime import datetime

    from hub.core.outbound import RecordSink
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)
REPORTS = (CenterItemReceivedV1, CenterDiagnosedV1, CenterWorkCompletedV1, CenterVisitReportedV1)


class CenterClient(AsyncResource):
    """A repair center's API; a ticket it already has counts as created."""

    def __init__(self, url: str, timeout_s: float = 2.0, partner: str = "center") -> None:
        self._url = url.rstrip("/")
        self._partner = partner
        self._timeout = httpx.Timeout(timeout_s)
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Create the connection pool."""
        self._http = httpx.AsyncClient(
            timeout=self._timeout, transport=MeteredTransport(self._partner)
        )

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post(self, path: str, body: str) -> None:
        if self._http is None:
            raise RuntimeError("CenterClient used before start()")
        response = await self._http.post(
            f"{self._url}{path}", content=body, headers={"content-type": "application/json"}
        )
        response.raise_for_status()  # 5xx and 429 retry (transient), other 4xx dead-letter

    async def open_ticket(self, ticket: RepairTicketV1) -> None:
        """Create the ticket (idempotent on case id and kind at the center)."""
        await self._post("/tickets", ticket.model_dump_json())

    async def decide_quote(self, decision: QuoteDecisionV1) -> None:
        """Pass the customer's answer on."""
        await self._post("/quotes", decision.model_dump_json())

    async def parts_ready(self, ready: PartsReadyV1) -> None:
        """Tell the center the parts of a ticket are reserved: the repair may start."""
        await self._post("/parts", ready.model_dump_json())

    async def withdraw(self, withdrawn: RepairWithdrawnV1) -> None:
        """Tell the center to do no work on a ticket (the hub replaced the item)."""
        await self._post("/withdrawals", withdrawn.model_dump_json())


def declare_center_gateway(settings: HubSettings, center: str) -> Service:
    """Group `gateway-center-<code>`: reads the center's ticket topic.

    Its handlers emit nothing; its outputs are the reports its webhook takes.
    """
    return Service(
        group=f"gateway-center-{center}",
        inputs=(center_tickets_topic(center),),
        handlers={},
        source=f"{settings.source}/gateway-center-{center}",
        state_model=None,
        concurrency=settings.partner_concurrency,
        emits=routes(Route.to(center_events_topic(center)), *REPORTS),
    )


def build_center_gateway(settings: HubSettings, center: str, client: CenterClient) -> Service:
    """The gateway of `center` with its handlers: each ticket and quote an API call."""

    async def ticket(opened: RepairTicketV1, _state: None, _at: datetime) -> Decision[Any]:
        await client.open_ticket(opened)
        return Decision()

    async def quote(decision: QuoteDecisionV1, _state: None, _at: datetime) -> Decision[Any]:
        await client.decide_quote(decision)
        return Decision()

    async def parts(ready: PartsReadyV1, _state: None, _at: datetime) -> Decision[Any]:
        await client.parts_ready(ready)
        return Decision()

    async def withdraw(withdrawn: RepairWithdrawnV1, _state: None, _at: datetime) -> Decision[Any]:
        await client.withdraw(withdrawn)
        return Decision()

    handlers: dict[str, Handler] = {
        RepairTicketV1.event_type: ticket,
        QuoteDecisionV1.event_type: quote,
        PartsReadyV1.event_type: parts,
        RepairWithdrawnV1.event_type: withdraw,
    }
    return replace(declare_center_gateway(settings, center), handlers=handlers)


def read_report(body: dict[str, Any]) -> Event:
    """The center event a pushed report carries; TypeError when it is not a center report."""
    ce_type = f"{body['event_type']}.v{body['version']}"
    report = CATALOGUE.decode(ce_type, json.dumps(body["data"]).encode())
    if not isinstance(report, REPORTS):
        raise TypeError(f"{ce_type} is not a repair-center report")
    return report


class CenterReportReceiver(PushReceiver):
    """Receives a center's pushed reports; acknowledges only what is safely on Kafka."""

    def __init__(
        self,
        sink: RecordSink,
        center: str,
        *,
        declared: Service,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        path = f"/centers/{center}/reports"
        super().__init__(sink, declared, partner=center, path=path, host=host, port=port)
        self._center = center
        self._secret = secret

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        refusal = center_refusal(
            self._secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            raw,
        )
        if refusal is not None:
            self._refuse(refusal)
            return web.json_response({"error": "signature check failed"}, status=401)
        try:
            body = json.loads(raw)
            report, report_id = read_report(body), str(body["report_id"])
        except (ValueError, KeyError, TypeError, HubError) as error:
            log.warning("center_report_refused", center=self._center, reason=str(error)[:300])
            return web.json_response({"error": str(error)[:300]}, status=400)
        case_id = str(report.model_dump()["case_id"])
        record = event_record(
            self._topic_of(report),
            report,
            key=case_id,
            source=f"urn:center:{self._center}",
            event_id=f"center-{self._center}-{report_id}",  # a re-pushed report is the same event
        )
        await self._sink.send([record])
        return web.json_response({"ok": True})
