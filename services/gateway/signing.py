"""Webhook signatures: what a partner's push must carry for the hub to put it on Kafka.

A repair center signs `<timestamp>.<body>` with HMAC-SHA256 and its own secret; SF signs its
route pushes as it signs API calls (`gateway.sf_protocol.sign`). Both carry a timestamp, and a
push older than `MAX_AGE` is refused so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

from gateway.sf_protocol import sign

MAX_AGE = timedelta(minutes=5)
TIMESTAMP_HEADER = "X-Hub-Timestamp"
"""Unix time in seconds when the center signed the push."""
SIGNATURE_HEADER = "X-Hub-Signature"
"""`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under the center's secret."""
SCHEME = "sha256="


def center_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Hub-Signature` value of `body` signed at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def center_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers a repair center sends with a signed push of `body`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: center_signature(secret, timestamp, body),
        "content-type": "application/json",
    }


def stale(timestamp_s: float, now: float | None = None) -> bool:
    """Whether a push signed at `timestamp_s` is outside the accepted window, either way."""
    current = time.time() if now is None else now
    return abs(current - timestamp_s) > MAX_AGE.total_seconds()


def center_refusal(
    secret: str, timestamp: str | None, signature: str | None, body: bytes
) -> str | None:
    """Why a center push is refused, or None when its signature holds and it is fresh."""
    if not timestamp or not signature:
        return f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}"
    if not timestamp.isdigit():
        return f"{TIMESTAMP_HEADER} is not Unix seconds"
    # Compared before the age, so the log says "bad signature" for a forgery of any age.
    if not hmac.compare_digest(center_signature(secret, timestamp, body), signature):
        return "signature does not match"
    if stale(int(timestamp)):
        return f"timestamp {timestamp} is more than {MAX_AGE} away"
    return None


def sf_push_form(msg_data: str, checkword: str, now: float | None = None) -> dict[str, str]:
    """The form fields of an SF route push, signed as SF signs: msgData, timestamp, msgDigest."""
    timestamp = str(int((time.time() if now is None else now) * 1000))
    return {
        "msgData": msg_data,
        "timestamp": timestamp,
        "msgDigest": sign(msg_data, timestamp, checkword),
    }


def sf_refusal(
    checkword: str, msg_data: str | None, timestamp: str | None, digest: str | None
) -> str | None:
    """Why an SF route push is refused, or None when its digest holds and it is fresh."""
    if msg_data is None or not timestamp or not digest:
        return "missing msgData, timestamp or msgDigest"
    if not timestamp.isdigit():
        return "timestamp is not Unix milliseconds"
    if not hmac.compare_digest(sign(msg_data, timestamp, checkword), digest):
        return "msgDigest does not match"
    if stale(int(timestamp) / 1000):
        return f"timestamp {timestamp} is more than {MAX_AGE} away"
    return None
