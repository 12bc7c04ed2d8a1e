"""An HTTP courier modelled on SF Express: signed form POSTs, 8016 on repeats, route pushes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp
import structlog
from aiohttp import web

from gateway.sf_protocol import (
    ALREADY_CREATED,
    API_DIGEST_INVALID,
    API_MISSING_PARAMETER,
    API_NO_SERVICE,
    API_OK,
    CREATE_ORDER,
    SEARCH_ORDER,
    UPDATE_ORDER,
    sign,
)
from gateway.signing import sf_push_form
from hub.core.lifecycle import AsyncResource, serve_http
from lab.simulators.kafka_partner import say_if_failed
from lab.simulators.process import run

if TYPE_CHECKING:
    from collections.abc import Coroutine

log = structlog.get_logger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
PICKED_UP = 50
ROUTES = ((50, "顺丰速运 已收取快件"), (30, "快件在转运中"), (44, "正在派送途中"), (80, "已签收"))


@dataclass(frozen=True, slots=True)
class SfKnobs:
    """How the simulated SF API misbehaves."""

    error_rate: float = 0.0
    """HTTP 500 before doing anything."""
    timeout_rate: float = 0.0
    """Hang for `hang_s` (longer than the client waits) before answering."""
    hang_s: float = 3.0
    latency_s: float = 0.0
    rate_limit_per_s: int | None = None
    capacity_rate: float = 0.0
    """Business error 8177 (peak capacity)."""
    out_of_hours: bool = False
    """Business error 8096."""
    step_delay_s: float = 0.2
    duplicate_push_rate: float = 0.0
    seed: int | None = None


@dataclass
class SfCourierSimulator(AsyncResource):
    """The SF open-platform API on 127.0.0.1, pushing routes to `webhook_url`."""

    partner_id: str
    checkword: str
    webhook_url: str | None = None
    knobs: SfKnobs = field(default_factory=SfKnobs)
    port: int = 0
    """0: a free port."""
    created: Counter[str] = field(default_factory=Counter)
    """Orders created, per orderId: exactly 1 each is the promise under test."""
    requests: Counter[str] = field(default_factory=Counter)
    pushes: int = 0
    waybills: dict[str, str] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._random = random.Random(self.knobs.seed)  # noqa: S311 - a simulation
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._window: list[float] = []
        self._pusher: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/std/service", self._service)
        self._runner, port = await serve_http(app, port=self.port)
        self.url = f"http://127.0.0.1:{port}/std/service"

    async def stop(self) -> None:
        """Stop pushing and listening."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pusher is not None:
            await self._pusher.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(say_if_failed("sf"))

    def _rate_limited(self) -> bool:
        if self.knobs.rate_limit_per_s is None:
            return False
        now = time.monotonic()
        self._window = [seen for seen in self._window if now - seen < 1.0]
        self._window.append(now)
        return len(self._window) > self.knobs.rate_limit_per_s

    async def _fault(self) -> web.Response | None:
        """The misbehaviour the knobs ask for, before any real work."""
        knobs = self.knobs
        if knobs.latency_s:
            await asyncio.sleep(knobs.latency_s)
        if self._rate_limited():
            return web.Response(status=429, text="too many requests")
        if self._random.random() < knobs.error_rate:
            return web.Response(status=500, text="internal error")
        if self._random.random() < knobs.timeout_rate:
            await asyncio.sleep(knobs.hang_s)
        return None

    async def _service(self, request: web.Request) -> web.Response:
        form = await request.post()
        service = str(form.get("serviceCode", ""))
        self.requests[service] += 1
        fault = await self._fault()
        if fault is not None:
            return fault
        msg_data = str(form.get("msgData", ""))
        timestamp = str(form.get("timestamp", ""))
        if form.get("partnerID") != self.partner_id or form.get("msgDigest") != sign(
            msg_data, timestamp, self.checkword
        ):
            return _api_error(API_DIGEST_INVALID, "数字签名无效")
        handlers = {
            CREATE_ORDER: self._create,
            SEARCH_ORDER: self._search,
            UPDATE_ORDER: self._update,
        }
        if service not in handlers:
            return _api_error(API_NO_SERVICE, f"无对应服务权限: {service}")
        try:
            data = json.loads(msg_data)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return _api_error(API_MISSING_PARAMETER, "msgData 不是 JSON 对象")
        return handlers[service](data)

    def _search(self, data: dict[str, Any]) -> web.Response:
        waybill = self.waybills.get(data.get("orderId", ""))
        if waybill is None:
            return _business(success=False, code="8018", message="订单不存在")
        return _business(data={"orderId": data["orderId"], **_waybill_list(waybill)})

    def _update(self, data: dict[str, Any]) -> web.Response:
        if str(data.get("dealType")) != "2":
            return _business(success=False, code="8019", message="unsupported dealType")
        self.cancelled.add(data.get("orderId", ""))
        return _business(data={"orderId": data.get("orderId")})

    def _create(self, data: dict[str, Any]) -> web.Response:
        order_id = str(data.get("orderId", ""))
        if order_id in self.waybills:
            return _business(success=False, code=ALREADY_CREATED, message="重复下单")
        if self.knobs.out_of_hours:
            return _business(success=False, code="8096", message="不在收派时间内")
        if self._random.random() < self.knobs.capacity_rate:
            return _business(success=False, code="8177", message="运力紧张,暂无法下单")
        waybill = f"SF{len(self.waybills) + 1:013d}"
        self.waybills[order_id] = waybill
        self.created[order_id] += 1
        if self.webhook_url:
            contacts = data.get("contactInfoList") or [{}]
            self._spawn(self._push_routes(order_id, waybill, str(contacts[0].get("city", ""))))
        return _business(data={"orderId": order_id, **_waybill_list(waybill)})

    async def _push_routes(self, order_id: str, waybill: str, pickup_city: str) -> None:
        for op_code, remark in ROUTES:
            await asyncio.sleep(self.knobs.step_delay_s)
            if order_id in self.cancelled:
                return
            route = {
                "id": uuid.uuid4().hex, "mailno": waybill, "orderid": order_id,
                "acceptTime": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
                "acceptAddress": pickup_city if op_code == PICKED_UP else "杭州市",
                "remark": remark, "opCode": str(op_code),
            }  # fmt: skip
            copies = 2 if self._random.random() < self.knobs.duplicate_push_rate else 1
            for _ in range(copies):
                await self._push(route)

    async def _push(self, route: dict[str, str]) -> None:
        assert self.webhook_url is not None  # noqa: S101 - only spawned with a webhook
        if self._pusher is None:
            # One session for every push: a client per order built a TLS context each time, and
            # at 100 cases/s that CPU delayed the simulator's own API answers past SF's timeout.
            self._pusher = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        msg_data = json.dumps({"Body": {"WaybillRoute": [route]}}, ensure_ascii=False)
        for attempt in range(5):  # SF re-pushes until the receiver acknowledges
            try:
                # Signed afresh on every attempt, as SF does: the timestamp is the push's own.
                form = sf_push_form(msg_data, self.checkword)
                async with self._pusher.post(self.webhook_url, data=form) as response:
                    if response.status == 200:  # noqa: PLR2004
                        self.pushes += 1
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                log.info("sf_sim_push_retry", attempt=attempt, error=str(error))
            await asyncio.sleep(0.2 * (attempt + 1))


def _waybill_list(waybill: str) -> dict[str, Any]:
    return {"waybillNoInfoList": [{"waybillType": 1, "waybillNo": waybill}]}


def _business(
    *, success: bool = True, code: str = "S0000", message: str | None = None,
    data: dict[str, Any] | None = None,
) -> web.Response:  # fmt: skip
    inner = {"success": success, "errorCode": code, "errorMsg": message, "msgData": data}
    return web.json_response(
        {
            "apiResultCode": API_OK,
            "apiErrorMsg": "",
            "apiResponseID": uuid.uuid4().hex,
            "apiResultData": json.dumps(inner, ensure_ascii=False),
        }
    )


def _api_error(code: str, message: str) -> web.Response:
    return web.json_response(
        {"apiResultCode": code, "apiErrorMsg": message, "apiResponseID": uuid.uuid4().hex}
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m lab.simulators.sf_courier --port 8701 --webhook-url ...`: credentials from env."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--webhook-url", default=None, help="where route pushes go")
    for knob, default in (("error-rate", 0.0), ("timeout-rate", 0.0), ("latency", 0.0),
                          ("capacity-rate", 0.0), ("step-delay", 2.0),
                          ("duplicate-push-rate", 0.0)):  # fmt: skip
        parser.add_argument(f"--{knob}", type=float, default=default)
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per second")
    parser.add_argument("--out-of-hours", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    partner_id, checkword = (
        os.environ.get(name) for name in ("HUB_COURIER_SF_PARTNER_ID", "HUB_COURIER_SF_CHECKWORD")
    )
    if not partner_id or not checkword:
        parser.error("set HUB_COURIER_SF_PARTNER_ID and HUB_COURIER_SF_CHECKWORD")
    knobs = SfKnobs(
        error_rate=args.error_rate, timeout_rate=args.timeout_rate, latency_s=args.latency,
        rate_limit_per_s=args.rate_limit, capacity_rate=args.capacity_rate,
        out_of_hours=args.out_of_hours, step_delay_s=args.step_delay,
        duplicate_push_rate=args.duplicate_push_rate, seed=args.seed,
    )  # fmt: skip
    sim = SfCourierSimulator(partner_id, checkword, args.webhook_url, knobs, port=args.port)
    run(sim, lambda: {"url": sim.url, "created": len(sim.created), "pushes": sim.pushes})


if __name__ == "__main__":
    main()
