"""The SF Express API client: create, look up and cancel pickup orders, idempotently."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import structlog

from gateway.sf_protocol import (
    ALREADY_CREATED,
    CREATE_ORDER,
    REJECTIONS,
    SEARCH_ORDER,
    UPDATE_ORDER,
    SfProtocolError,
    SfResult,
    parse_response,
    request_form,
    waybill_of,
)
from hub.core.errors import PermanentError, TransientError
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import MeteredTransport
from hub.messages.courier import CourierRejection

if TYPE_CHECKING:
    from hub.messages.courier import PickupContact, PickupOrderV1

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SfCreateResult:
    """SF took the order (a waybill) or refused it (a rejection with SF's raw code)."""

    waybill_no: str | None = None
    rejection: CourierRejection | None = None
    raw_code: str = ""
    detail: str = ""


def _contact(kind: int, contact: PickupContact) -> dict[str, object]:
    return {
        "contactType": kind,
        "contact": contact.name,
        "mobile": contact.phone,
        "province": contact.province,
        "city": contact.city,
        "county": contact.district,
        "address": contact.street,
        "country": "CN",
    }


def order_message(order: PickupOrderV1) -> dict[str, object]:
    """The msgData of EXP_RECE_CREATE_ORDER for one pickup order."""
    message: dict[str, object] = {
        "language": "zh-CN",
        "orderId": order.order_id,
        "contactInfoList": [_contact(1, order.sender), _contact(2, order.receiver)],
        "cargoDetails": [{"name": order.category, "count": 1}],
        "expressTypeId": 1,
        "isReturnRoutelabel": 0,
    }
    if order.pickup_window is not None:
        message["sendStartTm"] = order.pickup_window.start.strftime("%Y-%m-%d %H:%M:%S")
    if order.insured:
        message["serviceList"] = [{"name": "INSURE", "value": str(order.declared_value)}]
    return message


class SfClient(AsyncResource):
    """One SF partner account; every call has a timeout; started and stopped by its owner."""

    def __init__(
        self,
        url: str,
        partner_id: str,
        checkword: str,
        timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._partner_id = partner_id
        self._checkword = checkword
        self._timeout = httpx.Timeout(timeout_s)
        self._transport = transport
        """Tests put an `httpx.MockTransport` here; otherwise the network."""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Create the connection pool."""
        self._http = httpx.AsyncClient(
            timeout=self._timeout, transport=MeteredTransport("sf", self._transport)
        )

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _call(self, service_code: str, message: dict[str, object]) -> SfResult:
        if self._http is None:
            raise RuntimeError("SfClient used before start()")
        form = request_form(
            partner_id=self._partner_id,
            request_id=uuid.uuid4().hex,
            service_code=service_code,
            timestamp=str(int(time.time() * 1000)),
            msg_data=json.dumps(message, ensure_ascii=False),
            checkword=self._checkword,
        )
        # Timeouts and connection errors propagate: the kernel classifies them as transient.
        response = await self._http.post(self._url, data=form)
        response.raise_for_status()  # 5xx and 429 are transient to the kernel, 4xx permanent
        try:
            return parse_response(response.text)
        except SfProtocolError as error:
            if error.transient:
                raise TransientError(str(error)) from error
            raise PermanentError(str(error)) from error

    async def create_order(self, order: PickupOrderV1) -> SfCreateResult:
        """Create the order; a repeat (8016) is success and its waybill is looked up."""
        result = await self._call(CREATE_ORDER, order_message(order))
        waybill = waybill_of(result)
        if result.success and waybill is not None:
            log.debug("sf_order_created", order_id=order.order_id, waybill_no=waybill)
            return SfCreateResult(waybill_no=waybill, raw_code=result.error_code)
        if result.success or result.error_code == ALREADY_CREATED:
            # An earlier attempt got through (its answer was lost): look the waybill up.
            found = await self._call(SEARCH_ORDER, {"orderId": order.order_id, "searchType": "1"})
            waybill = waybill_of(found)
            if waybill is None:
                raise TransientError(f"SF says {order.order_id} exists but does not show it yet")
            log.info("sf_order_already_created", order_id=order.order_id, waybill_no=waybill)
            return SfCreateResult(waybill_no=waybill, raw_code=result.error_code)
        log.info("sf_order_refused", order_id=order.order_id, code=result.error_code)
        return SfCreateResult(
            rejection=REJECTIONS.get(result.error_code, CourierRejection.REFUSED),
            raw_code=result.error_code,
            detail=result.error_message,
        )

    async def cancel_order(self, order_id: str) -> None:
        """Withdraw an order (dealType 2)."""
        result = await self._call(UPDATE_ORDER, {"orderId": order_id, "dealType": 2})
        if not result.success:
            raise PermanentError(f"SF refused to cancel {order_id}: {result.error_code}")
