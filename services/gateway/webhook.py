"""Receives SF route pushes over HTTP and puts them on `courier.sf.events` as tracking events.

SF posts a form: `msgData` (the routes as JSON), `timestamp` (ms) and `msgDigest`, signed with
the checkword as its API calls are; a push whose digest fails or that is stale is refused (401).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from pydantic import ValidationError

from gateway.push import PushReceiver
from gateway.signing import sf_refusal
from hub.core.outbound import event_record
from hub.messages.courier import CourierTrackingV1, case_id_of

if TYPE_CHECKING:
    from hub.core.handler import Service
    from hub.core.outbound import RecordSink

log = structlog.get_logger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")
ACKNOWLEDGED = {"return_code": "0000", "return_msg": "成功"}
UNAUTHORIZED = {"return_code": "1001", "return_msg": "signature check failed"}


def tracking_of(route: dict[str, Any]) -> CourierTrackingV1:
    """One SF WaybillRoute as a tracking event (SF times are China local time)."""
    accepted = datetime.strptime(str(route["acceptTime"]), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=CHINA
    )
    return CourierTrackingV1(
        courier_event_id=str(route["id"]),
        order_id=str(route["orderid"]),
        case_id=case_id_of(str(route["orderid"])),
        waybill_no=str(route["mailno"]),
        raw_code=str(route["opCode"]),
        description=str(route.get("remark", "")),
        location=str(route.get("acceptAddress", "")),
        occurred_at=accepted,
    )


class RoutePushReceiver(PushReceiver):
    """An HTTP endpoint for route pushes; acknowledges only what is safely on Kafka."""

    def __init__(
        self,
        sink: RecordSink,
        *,
        declared: Service,
        checkword: str,
        courier: str = "sf",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        path = f"/{courier}/routes"
        super().__init__(sink, declared, partner=courier, path=path, host=host, port=port)
        self._checkword = checkword
        self._courier = courier

    async def _receive(self, request: web.Request) -> web.Response:
        form = await request.post()
        msg_data, timestamp, digest = (
            value if isinstance(value := form.get(name), str) else None
            for name in ("msgData", "timestamp", "msgDigest")
        )
        refusal = sf_refusal(self._checkword, msg_data, timestamp, digest)
        if refusal is not None or msg_data is None:
            self._refuse(refusal)
            return web.json_response(UNAUTHORIZED, status=401)
        try:
            body = json.loads(msg_data)
            routes = body["Body"]["WaybillRoute"]
            events = [tracking_of(route) for route in routes]
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            log.warning("route_push_refused", courier=self._courier, reason=str(error)[:300])
            return web.json_response(
                {"return_code": "1000", "return_msg": f"bad route push: {error}"[:300]}, status=400
            )
        # The courier's route id makes the message id: a re-pushed route is the same event.
        records = [
            event_record(
                self._topic_of(event),
                event,
                key=event.case_id,
                source=f"urn:courier:{self._courier}",
                event_id=f"{self._courier}-route-{event.courier_event_id}",
            )
            for event in events
        ]
        await self._sink.send(records)  # raises (HTTP 500) unless Kafka has them: SF pushes again
        return web.json_response(ACKNOWLEDGED)
