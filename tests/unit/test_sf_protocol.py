"""SF Express protocol: the digest, request forms, answers, and the client's reading of them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, quote_plus

import httpx
import pytest

from gateway.sf_client import SfClient, SfCreateResult, order_message
from gateway.sf_protocol import (
    CREATE_ORDER,
    SEARCH_ORDER,
    UPDATE_ORDER,
    SfProtocolError,
    parse_response,
    request_form,
    sign,
    waybill_of,
)
from hub.core.errors import FailureClass, PermanentError, TransientError, classify
from hub.messages.common import TimeWindow
from hub.messages.courier import CourierRejection, Leg, PickupContact, PickupOrderV1

MSG = '{"orderId":"A~1 *","city":"上海"}'
# MSG + "1700000000000" + "cw-1", URL-encoded by hand as java.net.URLEncoder does it (UTF-8,
# space as "+", "*" kept, "~" encoded): what SF's own SDK signs.
HAND_ENCODED = (
    "%7B%22orderId%22%3A%22A%7E1+*%22%2C%22city%22%3A%22%E4%B8%8A%E6%B5%B7%22%7D1700000000000cw-1"
)


def test_the_digest_is_base64_md5_of_the_url_encoded_text() -> None:
    by_hand = base64.b64encode(hashlib.md5(HAND_ENCODED.encode()).digest()).decode()  # noqa: S324
    assert sign(MSG, "1700000000000", "cw-1") == by_hand == "god68+2WugONxf9i8P3B9A=="


def test_the_encoding_is_quote_plus_except_for_star_and_tilde() -> None:
    text = MSG + "1700000000000cw-1"
    assert quote_plus(text).replace("~", "%7E").replace("%2A", "*") == HAND_ENCODED
    plain = '{"orderId":"AS1-inbound-1","remark":"上门 取件"}'
    expected = base64.b64encode(
        hashlib.md5(quote_plus(plain + "1" + "k").encode()).digest()  # noqa: S324
    ).decode()
    assert sign(plain, "1", "k") == expected  # without * or ~ the two encodings agree


def test_a_request_form_has_the_six_fields_and_signs_its_msg_data() -> None:
    form = request_form(
        partner_id="P1", request_id="r-1", service_code=CREATE_ORDER,
        timestamp="1700000000000", msg_data=MSG, checkword="cw-1",
    )  # fmt: skip
    assert set(form) == {"partnerID", "requestID", "serviceCode", "timestamp", "msgDigest",
                         "msgData"}  # fmt: skip
    assert form["msgDigest"] == "god68+2WugONxf9i8P3B9A=="
    assert form["msgData"] == MSG


def answer(inner: object, *, code: str = "A1000") -> str:
    return json.dumps({
        "apiResultCode": code, "apiErrorMsg": "" if code == "A1000" else "refused",
        "apiResponseID": "resp-1",
        "apiResultData": inner if isinstance(inner, str) else json.dumps(inner),
    })  # fmt: skip


def business(code: str, message: str | None = None, data: object = None) -> str:
    return answer({
        "success": code == "S0000", "errorCode": code, "errorMsg": message, "msgData": data,
    })  # fmt: skip


WAYBILLS = {
    "orderId": "AS1-inbound-1",
    "waybillNoInfoList": [{"waybillType": 1, "waybillNo": "SF1234567890"}],
}


def test_a_created_order_is_read_with_its_waybill() -> None:
    result = parse_response(business("S0000", data=WAYBILLS))
    assert (result.success, result.error_code) == (True, "S0000")
    assert waybill_of(result) == "SF1234567890"


@pytest.mark.parametrize(
    ("code", "message"),
    [("8016", "重复下单"), ("8177", "运力紧张"), ("8096", "不在收派时间内")],
)
def test_business_refusals_are_results_with_their_code(code: str, message: str) -> None:
    result = parse_response(business(code, message))
    assert (result.success, result.error_code, result.error_message) == (False, code, message)
    assert waybill_of(result) is None


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        "[]",
        json.dumps({"apiResultCode": "A1000"}),
        answer("not json"),
        answer({"success": True, "msgData": ["SF1"]}),
    ],
)
def test_malformed_answers_are_protocol_errors(body: str) -> None:
    with pytest.raises(SfProtocolError, match="unreadable SF response"):
        parse_response(body)


def test_platform_refusals_say_whether_trying_again_can_help() -> None:
    with pytest.raises(SfProtocolError, match="A1006") as bad_digest:
        parse_response(answer({}, code="A1006"))
    assert not bad_digest.value.transient
    with pytest.raises(SfProtocolError) as flow_control:
        parse_response(answer({}, code="A1005"))
    assert flow_control.value.transient


def contact(city: str) -> PickupContact:
    return PickupContact(name="张三", phone="13800138000", province="浙江省", city=city,
                         district="西湖区", street="文三路 1 号")  # fmt: skip


def pickup_order(order_id: str = "AS1-inbound-1") -> PickupOrderV1:
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    return PickupOrderV1(
        order_id=order_id, case_id="AS1", leg=Leg.INBOUND, sender=contact("杭州市"),
        receiver=contact("上海市"), category="phone", declared_value=Decimal("4999.00"),
        insured=True, pickup_window=TimeWindow(start=now, end=now + timedelta(hours=4)),
        ordered_at=now,
    )  # fmt: skip


def test_the_order_message_carries_order_id_contacts_and_cargo() -> None:
    message = order_message(pickup_order())
    assert message["orderId"] == "AS1-inbound-1"
    contacts = message["contactInfoList"]
    assert isinstance(contacts, list)
    assert [(c["contactType"], c["city"]) for c in contacts] == [(1, "杭州市"), (2, "上海市")]
    assert message["cargoDetails"] == [{"name": "phone", "count": 1}]
    assert message["serviceList"] == [{"name": "INSURE", "value": "4999.00"}]


Reply = Callable[[str, dict[str, object]], httpx.Response]


def sf_api(reply: Reply, calls: list[tuple[str, dict[str, object]]]) -> httpx.MockTransport:
    """A fake SF endpoint that checks each call's signature, then answers with `reply`."""

    def handle(request: httpx.Request) -> httpx.Response:
        form = {name: values[0] for name, values in parse_qs(request.content.decode()).items()}
        assert form["partnerID"] == "P1"
        assert form["msgDigest"] == sign(form["msgData"], form["timestamp"], "cw-1")
        message = json.loads(form["msgData"])
        calls.append((form["serviceCode"], message))
        return reply(form["serviceCode"], message)

    return httpx.MockTransport(handle)


async def create(reply: Reply) -> tuple[SfCreateResult, list[tuple[str, dict[str, object]]]]:
    calls: list[tuple[str, dict[str, object]]] = []
    async with SfClient("http://sf.test/std/service", "P1", "cw-1",
                        transport=sf_api(reply, calls)) as client:  # fmt: skip
        return await client.create_order(pickup_order()), calls


def ok(body: str) -> httpx.Response:
    return httpx.Response(200, text=body)


async def test_the_client_returns_the_waybill_of_a_created_order() -> None:
    result, calls = await create(lambda _service, _message: ok(business("S0000", data=WAYBILLS)))
    assert result == SfCreateResult(waybill_no="SF1234567890", raw_code="S0000")
    assert [service for service, _ in calls] == [CREATE_ORDER]


async def test_already_created_counts_as_success_and_the_waybill_is_looked_up() -> None:
    def reply(service: str, message: dict[str, object]) -> httpx.Response:
        if service == SEARCH_ORDER:
            assert message["orderId"] == "AS1-inbound-1"
            return ok(business("S0000", data=WAYBILLS))
        return ok(business("8016", "重复下单"))

    result, calls = await create(reply)
    assert result == SfCreateResult(waybill_no="SF1234567890", raw_code="8016")
    assert [service for service, _ in calls] == [CREATE_ORDER, SEARCH_ORDER]


@pytest.mark.parametrize(
    ("code", "reason"),
    [("8177", CourierRejection.CAPACITY), ("8096", CourierRejection.OUT_OF_HOURS),
     ("1010", CourierRejection.REFUSED)],
)  # fmt: skip
async def test_business_refusals_become_rejections_with_the_raw_code(
    code: str, reason: CourierRejection
) -> None:
    result, _ = await create(lambda _service, _message: ok(business(code, "no")))
    assert result == SfCreateResult(rejection=reason, raw_code=code, detail="no")


def raising(error: Exception) -> Reply:
    def reply(_service: str, _message: dict[str, object]) -> httpx.Response:
        raise error

    return reply


@pytest.mark.parametrize(
    "reply",
    [
        lambda _s, _m: httpx.Response(500, text="internal error"),
        lambda _s, _m: httpx.Response(429, text="too many requests"),
        lambda _s, _m: ok(answer({}, code="A1005")),
        raising(httpx.ReadTimeout("timed out")),
        raising(httpx.ConnectError("refused")),
    ],
    ids=["http-500", "http-429", "flow-control", "timeout", "connection"],
)
async def test_unavailability_raises_for_the_kernel_to_retry(reply: Reply) -> None:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - several kinds, one verdict
        await create(reply)
    assert classify(raised.value) is FailureClass.TRANSIENT


async def test_an_unreadable_or_unsigned_call_is_permanent() -> None:
    with pytest.raises(PermanentError, match="A1006"):
        await create(lambda _s, _m: ok(answer({}, code="A1006")))
    with pytest.raises(PermanentError, match="unreadable"):
        await create(lambda _s, _m: ok("<html>maintenance</html>"))


async def test_a_created_order_not_yet_searchable_is_transient() -> None:
    def reply(service: str, _message: dict[str, object]) -> httpx.Response:
        return ok(business("8018" if service == SEARCH_ORDER else "8016"))

    with pytest.raises(TransientError, match="does not show it yet"):
        await create(reply)


async def test_cancel_sends_deal_type_2() -> None:
    calls: list[tuple[str, dict[str, object]]] = []
    transport = sf_api(lambda _s, m: ok(business("S0000", data={"orderId": m["orderId"]})), calls)
    async with SfClient("http://sf.test/std/service", "P1", "cw-1", transport=transport) as client:
        await client.cancel_order("AS1-inbound-1")
    assert calls == [(UPDATE_ORDER, {"orderId": "AS1-inbound-1", "dealType": 2})]
