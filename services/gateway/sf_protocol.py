"""SF Express open-platform protocol, pure: signatures, request forms, result codes."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from hub.messages.courier import CourierRejection

CREATE_ORDER = "EXP_RECE_CREATE_ORDER"
SEARCH_ORDER = "EXP_RECE_SEARCH_ORDER_RESP"
UPDATE_ORDER = "EXP_RECE_UPDATE_ORDER"
API_OK = "A1000"
API_MISSING_PARAMETER = "A1001"
API_NO_SERVICE = "A1004"
API_DIGEST_INVALID = "A1006"
API_TRANSIENT = frozenset({"A1005", "A1009", "A1099"})
"""Platform answers that pass: flow control, target service unreachable, system error."""
BUSINESS_OK = "S0000"
ALREADY_CREATED = "8016"
REJECTIONS = {"8177": CourierRejection.CAPACITY, "8096": CourierRejection.OUT_OF_HOURS}


def sign(msg_data: str, timestamp: str, checkword: str) -> str:
    """The `msgDigest`: Base64(MD5(URLEncode(msgData + timestamp + checkword))).

    URL-encoded as Java's URLEncoder does (UTF-8, space as `+`, `*` kept, `~` encoded), which
    is `quote_plus` but for those two characters.
    """
    encoded = quote_plus(msg_data + timestamp + checkword, safe="*", encoding="utf-8")
    encoded = encoded.replace("~", "%7E")
    digest = hashlib.md5(encoded.encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def request_form(
    *, partner_id: str, request_id: str, service_code: str, timestamp: str, msg_data: str,
    checkword: str,
) -> dict[str, str]:  # fmt: skip
    """The form fields of one API call."""
    return {
        "partnerID": partner_id,
        "requestID": request_id,
        "serviceCode": service_code,
        "timestamp": timestamp,
        "msgDigest": sign(msg_data, timestamp, checkword),
        "msgData": msg_data,
    }


@dataclass(frozen=True, slots=True)
class SfResult:
    """The business answer inside `apiResultData`."""

    success: bool
    error_code: str
    error_message: str
    data: dict[str, Any]


class SfProtocolError(ValueError):
    """The platform refused the call (`api_code`), or answered outside SF's documented shape."""

    def __init__(self, message: str, api_code: str = "") -> None:
        super().__init__(message)
        self.api_code = api_code

    @property
    def transient(self) -> bool:
        """Whether calling again later can help (flow control, platform trouble)."""
        return self.api_code in API_TRANSIENT


def parse_response(body: str) -> SfResult:
    """Read an API response: transport errors are SfProtocolError, business errors a result."""
    try:
        outer = json.loads(body)
        code = str(outer.get("apiResultCode"))
        if code != API_OK:
            raise SfProtocolError(
                f"SF API refused the call: {code} {outer.get('apiErrorMsg')}", api_code=code
            )
        inner = json.loads(outer["apiResultData"])
        data = inner.get("msgData") or {}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise SfProtocolError(f"unreadable SF response: {body[:200]!r}") from error
    if not isinstance(data, dict):
        raise SfProtocolError(f"unreadable SF response, msgData is no object: {body[:200]!r}")
    return SfResult(
        success=inner.get("success") is True,
        error_code=str(inner.get("errorCode") or BUSINESS_OK),
        error_message=str(inner.get("errorMsg") or ""),
        data=data,
    )


def waybill_of(result: SfResult) -> str | None:
    """The first waybill number of a create or search answer."""
    for waybill in result.data.get("waybillNoInfoList") or []:
        if isinstance(waybill, dict) and waybill.get("waybillNo"):
            return str(waybill["waybillNo"])
    return None
