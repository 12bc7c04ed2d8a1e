"""The insurer client against the insurer simulator over real HTTP: one settlement per claim id."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from hub.core.errors import FailureClass, PermanentError, classify
from hub.messages.insurance import ClaimOutcome, FreightClaimFiledV1, freight_claim_id
from insurance.client import InsurerClient, Insurers
from lab.simulators.insurer import InsurerKnobs, InsurerSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SECRET = "insurer-test-key"  # noqa: S105 - the simulated insurer's
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def a_claim(
    case_id: str = "AS1", policy_no: str = "YF-1", amount: str = "15.00"
) -> FreightClaimFiledV1:
    return FreightClaimFiledV1(
        case_id=case_id, claim_id=freight_claim_id(case_id), insurer="huatai",
        policy_no=policy_no, courier="sf", waybill_no="SF0000000000001",
        freight=Decimal("23.00"), amount=Decimal(amount), filed_at=NOW,
    )  # fmt: skip


@asynccontextmanager
async def serving(
    knobs: InsurerKnobs, timeout_s: float = 2.0, secret: str = SECRET
) -> AsyncIterator[tuple[InsurerSimulator, InsurerClient]]:
    """The simulator on a free port, and a client of it signing with `secret`."""
    async with InsurerSimulator("huatai", SECRET, knobs) as simulator:
        client = InsurerClient("huatai", simulator.url, secret, timeout_s=timeout_s)
        async with client:
            yield simulator, client


async def test_a_claim_is_approved_once_and_a_repeat_gets_the_same_answer() -> None:
    async with serving(InsurerKnobs(reject_policies=frozenset({"YF-OLD"})), 2.0) as (
        simulator,
        client,
    ):
        claim = a_claim()
        first = await client.file(claim)
        again = await client.file(claim)
        assert first == again
        assert (first.outcome, first.paid, first.insurer_ref) == (
            ClaimOutcome.APPROVED, Decimal("15.00"), "HUATAI-00000001",
        )  # fmt: skip
        assert simulator.settled == {claim.claim_id: 1}
        assert simulator.replayed == {claim.claim_id: 1}
        old = await client.file(a_claim("AS2", policy_no="YF-OLD"))
        assert (old.outcome, old.paid, old.reason_code) == (
            ClaimOutcome.REJECTED, Decimal("0.00"), "policy_expired",
        )  # fmt: skip


async def test_a_failed_first_call_is_transient_and_the_next_settles() -> None:
    async with serving(InsurerKnobs(fail_first=1), 2.0) as (simulator, client):
        claim = a_claim()
        with pytest.raises(httpx.HTTPStatusError) as failed:
            await client.file(claim)
        assert failed.value.response.status_code == 503
        assert classify(failed.value) is FailureClass.TRANSIENT
        assert simulator.settled == {}
        answer = await client.file(claim)
        assert answer.outcome is ClaimOutcome.APPROVED
        assert simulator.calls == {claim.claim_id: 2}
        assert simulator.settled == {claim.claim_id: 1}


async def test_an_answer_lost_to_a_timeout_is_not_a_second_payout() -> None:
    async with serving(InsurerKnobs(timeout_rate=1.0, hang_s=1.0), 0.2) as (simulator, client):
        claim = a_claim()
        with pytest.raises(httpx.TimeoutException) as slow:
            await client.file(claim)
        assert classify(slow.value) is FailureClass.TRANSIENT
        # The insurer settled it before it answered: the retry is told so, and nothing more is paid.
        assert simulator.settled == {claim.claim_id: 1}
        answer = await client.file(claim)
        assert (answer.outcome, answer.paid) == (ClaimOutcome.APPROVED, Decimal("15.00"))
        assert simulator.settled == {claim.claim_id: 1}
        assert simulator.replayed == {claim.claim_id: 1}


async def test_the_same_key_with_another_claim_is_refused_for_good() -> None:
    async with serving(InsurerKnobs(), 2.0) as (simulator, client):
        await client.file(a_claim())
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.file(a_claim(amount="9.00"))
        assert refused.value.response.status_code == 422
        assert classify(refused.value) is FailureClass.PERMANENT
        assert sum(simulator.settled.values()) == 1


async def test_a_claim_signed_with_the_wrong_key_is_refused() -> None:
    wrong = "not-the-key"
    async with serving(InsurerKnobs(), secret=wrong) as (simulator, client):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.file(a_claim())
        assert refused.value.response.status_code == 401
        assert classify(refused.value) is FailureClass.PERMANENT
        assert simulator.settled == {}


async def test_a_claim_on_an_insurer_the_table_does_not_know_is_permanent() -> None:
    insurers = Insurers({})
    with pytest.raises(
        PermanentError,
        match=r"FC-AS1 names insurer 'huatai', which the partner table lacks \(known: none\)",
    ):
        await insurers.file(a_claim())
