"""An HTTP freight insurer: signed claims, approved or rejected once per Idempotency-Key.

It misbehaves on request: fails calls (503), answers too late (the claim settled, the answer
lost to the caller's timeout), or slowly; a repeat of a key gets the first answer again.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from aiohttp import web

from gateway.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, center_refusal
from hub.core.lifecycle import AsyncResource, serve_http
from insurance.client import CLAIMS_PATH, IDEMPOTENCY_HEADER
from lab.simulators.process import run

log = structlog.get_logger(__name__)

REJECTION = ("not_eligible", "退货运单不在保障范围内")


@dataclass(frozen=True, slots=True)
class InsurerKnobs:
    """How the simulated insurer decides and misbehaves."""

    reject_rate: float = 0.0
    """Claims rejected (`not_eligible`) at random."""
    reject_policies: frozenset[str] = frozenset()
    """Policies whose claims are always rejected (`policy_expired`)."""
    fail_first: int = 0
    """The first calls of each claim answer 503 before doing anything."""
    error_rate: float = 0.0
    """HTTP 503 before doing anything, at random."""
    timeout_rate: float = 0.0
    """Settle the claim, then hang `hang_s` before answering (the caller gives up first)."""
    hang_s: float = 3.0
    latency_s: float = 0.0
    seed: int | None = None


@dataclass
class InsurerSimulator(AsyncResource):
    """The claim API on 127.0.0.1; checks the hub's signature under `secret`."""

    code: str
    secret: str
    knobs: InsurerKnobs = field(default_factory=InsurerKnobs)
    port: int = 0
    """0: a free port."""
    calls: Counter[str] = field(default_factory=Counter)
    """Calls per claim id, failed ones included."""
    settled: Counter[str] = field(default_factory=Counter)
    """Claims settled, per claim id: exactly 1 each is the promise under test."""
    replayed: Counter[str] = field(default_factory=Counter)
    """Repeats answered from the first answer, per claim id."""
    answers: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.knobs.seed)  # noqa: S311 - a simulation
        self._bodies: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post(CLAIMS_PATH, self._claim)
        self._runner, port = await serve_http(app, port=self.port)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _claim(self, request: web.Request) -> web.Response:
        raw = await request.read()
        refusal = center_refusal(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            raw,
        )
        if refusal is not None:
            return web.json_response({"error": refusal}, status=401)
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        try:
            claim = json.loads(raw)
        except json.JSONDecodeError:
            claim = None
        if not key or not isinstance(claim, dict) or claim.get("claim_id") != key:
            return web.json_response(
                {"error": f"{IDEMPOTENCY_HEADER} must be the claim id"}, status=400
            )
        self.calls[key] += 1
        if self.knobs.latency_s:
            await asyncio.sleep(self.knobs.latency_s)
        if (
            self.calls[key] <= self.knobs.fail_first
            or self._random.random() < self.knobs.error_rate
        ):
            return web.json_response({"error": "service unavailable"}, status=503)
        digest = hashlib.sha256(raw).hexdigest()
        if key in self.answers:
            if self._bodies[key] != digest:
                # The same key with another claim: refused, as idempotency keys are.
                return web.json_response(
                    {"error": f"{key} was filed with another body"}, status=422
                )
            self.replayed[key] += 1
            return web.json_response(self.answers[key], headers={"Idempotent-Replayed": "true"})
        answer = self._decide(key, claim)
        self.answers[key], self._bodies[key] = answer, digest
        self.settled[key] += 1
        log.info("insurer_sim_settled", insurer=self.code, claim_id=key, status=answer["status"])
        if self._random.random() < self.knobs.timeout_rate:
            await asyncio.sleep(self.knobs.hang_s)  # settled, but the caller will not hear it
        return web.json_response(answer)

    def _decide(self, key: str, claim: dict[str, Any]) -> dict[str, str]:
        reference = f"{self.code.upper()}-{len(self.answers) + 1:08d}"
        base = {"claim_id": key, "insurer_ref": reference}
        if claim.get("policy_no") in self.knobs.reject_policies:
            return {**base, "status": "rejected", "paid": "0.00",
                    "reason_code": "policy_expired", "reason": "保单已过保障期"}  # fmt: skip
        if self._random.random() < self.knobs.reject_rate:
            code, reason = REJECTION
            return {**base, "status": "rejected", "paid": "0.00", "reason_code": code,
                    "reason": reason}  # fmt: skip
        paid = Decimal(str(claim.get("amount", "0")))
        return {**base, "status": "approved", "paid": str(paid)}


def main(argv: list[str] | None = None) -> None:
    """`python -m lab.simulators.insurer --code huatai --port 8801`: key from the environment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--code", default="huatai")
    parser.add_argument("--port", type=int, default=0)
    for knob in ("reject-rate", "error-rate", "timeout-rate", "latency"):
        parser.add_argument(f"--{knob}", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    variable = f"HUB_INSURER_{args.code.upper()}_SECRET"
    secret = os.environ.get(variable)
    if not secret:
        parser.error(f"set {variable}")
    knobs = InsurerKnobs(
        reject_rate=args.reject_rate, error_rate=args.error_rate, timeout_rate=args.timeout_rate,
        latency_s=args.latency, fail_first=args.fail_first, seed=args.seed,
    )  # fmt: skip
    sim = InsurerSimulator(args.code, secret, knobs, port=args.port)
    run(sim, lambda: {"url": sim.url, "settled": sum(sim.settled.values())})


if __name__ == "__main__":
    main()
