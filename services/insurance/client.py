"""The insurers' claim API: one signed, idempotent POST per claim, answered approved or rejected.

`POST <url>/v1/claims` carries the claim as JSON, `Idempotency-Key: <claim id>` (a repeat of the
key gets the first answer again, never a second payout) and the hub's HMAC-SHA256 signature of
`<timestamp>.<body>` under the insurer's key (`X-Hub-Timestamp`, `X-Hub-Signature`).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import httpx
import structlog

from gateway.signing import center_headers
from hub.core.errors import PermanentError
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import MeteredTransport
from hub.messages.insurance import ClaimOutcome
from insurance.domain import InsurerAnswer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hub.messages.insurance import FreightClaimFiledV1

log = structlog.get_logger(__name__)

CLAIMS_PATH = "/v1/claims"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def claim_body(claim: FreightClaimFiledV1) -> bytes:
    """The request body of `claim`: the same bytes on every attempt (the insurer compares them)."""
    body = {
        "claim_id": claim.claim_id,
        "policy_no": claim.policy_no,
        "waybill_no": claim.waybill_no,
        "courier": claim.courier,
        "amount": str(claim.amount),
        "currency": "CNY",
        "filed_at": claim.filed_at.isoformat(),
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()


def read_answer(claim_id: str, payload: object) -> InsurerAnswer:
    """The answer in an insurer's 200 response; PermanentError when it is not one."""
    if not isinstance(payload, dict) or payload.get("claim_id") != claim_id:
        raise PermanentError(f"the insurer answered {claim_id} with something else: {payload!r}")
    try:
        outcome = ClaimOutcome(str(payload.get("status")))
        paid = Decimal(str(payload.get("paid", "0")))
    except (ValueError, InvalidOperation) as error:
        raise PermanentError(f"unreadable answer to {claim_id}: {payload!r}") from error
    return InsurerAnswer(
        outcome=outcome,
        paid=paid,
        insurer_ref=str(payload.get("insurer_ref") or ""),
        reason_code=str(payload.get("reason_code") or ""),
        reason=str(payload.get("reason") or ""),
    )


class InsurerClient(AsyncResource):
    """One insurer's claim API; every call has a timeout; started and stopped by its owner."""

    def __init__(
        self,
        code: str,
        url: str,
        secret: str,
        timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.code = code
        self._url = url.rstrip("/")
        self._secret = secret
        self._timeout = httpx.Timeout(timeout_s)
        self._transport = transport
        """Tests put an `httpx.MockTransport` here; otherwise the network."""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Create the connection pool."""
        self._http = httpx.AsyncClient(
            timeout=self._timeout,
            transport=MeteredTransport(f"insurer-{self.code}", self._transport),
        )

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def file(self, claim: FreightClaimFiledV1) -> InsurerAnswer:
        """File `claim`; a repeat returns the insurer's first answer (the claim id is the key)."""
        if self._http is None:
            raise RuntimeError("InsurerClient used before start()")
        body = claim_body(claim)
        headers = {**center_headers(self._secret, body), IDEMPOTENCY_HEADER: claim.claim_id}
        # Timeouts and connection errors propagate: the kernel retries them (transient), and
        # the idempotency key makes the retry safe when the first call did get through.
        response = await self._http.post(f"{self._url}{CLAIMS_PATH}", content=body, headers=headers)
        response.raise_for_status()  # 5xx and 429 are transient to the kernel, 4xx permanent
        try:
            payload = response.json()
        except ValueError as error:
            raise PermanentError(f"the insurer's answer to {claim.claim_id} is not JSON") from error
        answer = read_answer(claim.claim_id, payload)
        log.info(
            "freight_claim_answered",
            insurer=self.code,
            claim_id=claim.claim_id,
            outcome=answer.outcome.value,
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )
        return answer


class Insurers(AsyncResource):
    """Every insurer's client, each claim sent to the insurer its policy names (a `ClaimPort`)."""

    def __init__(self, clients: Mapping[str, InsurerClient]) -> None:
        self._clients = dict(clients)

    async def start(self) -> None:
        """Start every client."""
        for client in self._clients.values():
            await client.start()

    async def stop(self) -> None:
        """Stop every client."""
        for client in self._clients.values():
            await client.stop()

    async def file(self, claim: FreightClaimFiledV1) -> InsurerAnswer:
        """File `claim` at its insurer; PermanentError when the partner table has no such one."""
        client = self._clients.get(claim.insurer)
        if client is None:
            known = ", ".join(sorted(self._clients)) or "none"
            raise PermanentError(
                f"{claim.claim_id} names insurer {claim.insurer!r}, which the partner table lacks "
                f"(known: {known}); add it to deploy/partners.yaml, then replay"
            )
        return await client.file(claim)
