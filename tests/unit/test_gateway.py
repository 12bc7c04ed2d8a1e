import base64
import hashlib
import json

import pytest

from dispatch.partners import load_partners
from gateway.bootstrap import sf_client_from_env
from gateway.sf_protocol import SfProtocolError, parse_response, sign, waybill_of
from hub.messages.courier import Leg, case_id_of, pickup_order_id


def java_url_encode(text: str) -> str:
    """java.net.URLEncoder.encode(text, "UTF-8"), byte by byte, as its documentation states."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if (byte < 128 and char.isalnum()) or char in ".-*_":
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


@pytest.mark.parametrize(
    "msg_data",
    ['{"orderId":"AS1-inbound-1","remark":"上门 取件"}', "a*b~c d+e/f?g=h&i", ""],
)
def test_the_digest_is_base64_md5_of_the_java_url_encoded_text(msg_data: str) -> None:
    expected = base64.b64encode(
        hashlib.md5(java_url_encode(msg_data + "1700000000000" + "cw").encode()).digest()  # noqa: S324
    ).decode()
    assert sign(msg_data, "1700000000000", "cw") == expected


def test_a_known_vector() -> None:
    assert sign(
        '{"orderId":"AS1-inbound-1","remark":"上门 取件"}', "1700000000000", "checkword-1"
    ) == ("h/8/xMM5osfMnIbTjPQ+PQ==")


def sf_answer(inner: dict[str, object], code: str = "A1000") -> str:
    return json.dumps(
        {"apiResultCode": code, "apiErrorMsg": "", "apiResultData": json.dumps(inner)}
    )


def test_business_answers_are_read() -> None:
    created = parse_response(sf_answer({
        "success": True, "errorCode": "S0000",
        "msgData": {"waybillNoInfoList": [{"waybillType": 1, "waybillNo": "SF123"}]},
    }))  # fmt: skip
    assert created.success
    assert waybill_of(created) == "SF123"
    duplicate = parse_response(
        sf_answer({"success": False, "errorCode": "8016", "errorMsg": "重复下单"})
    )
    assert (duplicate.success, duplicate.error_code) == (False, "8016")
    assert waybill_of(duplicate) is None


def test_transport_errors_and_garbage_are_protocol_errors() -> None:
    with pytest.raises(SfProtocolError, match="SF API refused the call: A1002"):
        parse_response(sf_answer({}, code="A1002"))
    with pytest.raises(SfProtocolError, match="unreadable SF response"):
        parse_response("<html>502 Bad Gateway</html>")


def test_order_ids_round_trip_and_foreign_ids_are_refused() -> None:
    order_id = pickup_order_id("AS0C4918E09C0B5D3898", Leg.OUTBOUND, 2)
    assert order_id == "AS0C4918E09C0B5D3898-outbound-2"
    assert case_id_of(order_id) == "AS0C4918E09C0B5D3898"
    with pytest.raises(ValueError, match="not a hub pickup order id: 'SF-ORDER-7'"):
        case_id_of("SF-ORDER-7")


def test_credentials_come_from_the_variables_the_partner_table_names() -> None:
    courier = load_partners().courier("sf")
    with pytest.raises(ValueError, match="needs HUB_COURIER_SF_CHECKWORD in the environment"):
        sf_client_from_env(
            courier, {"HUB_COURIER_SF_URL": "http://sf", "HUB_COURIER_SF_PARTNER_ID": "P"}
        )
    client = sf_client_from_env(courier, {
        "HUB_COURIER_SF_URL": "http://sf", "HUB_COURIER_SF_PARTNER_ID": "P",
        "HUB_COURIER_SF_CHECKWORD": "secret",
    })  # fmt: skip
    assert client is not None
    with pytest.raises(
        ValueError, match=r"no courier 'ems' in the partner table \(known: sf, jd, yd\)"
    ):
        load_partners().courier("ems")
