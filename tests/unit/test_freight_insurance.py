"""Return-freight insurance, pure: who is insured, when and how much to claim, what is said."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

from dispatch.partners import load_partners
from hub.bootstrap import Adapter, declaration_of
from hub.cli.stats import render_stats
from hub.core.handler import Decision
from hub.core.settings import HubSettings
from hub.messages.cases import CaseOpenedV1, TrackingStatus, TrackingUpdatedV1
from hub.messages.common import FreightInsurance, RequestType, ServiceMode
from hub.messages.courier import Leg
from hub.messages.insurance import (
    ClaimOutcome,
    FreightClaimFiledV1,
    FreightClaimSettledV1,
    freight_claim_id,
)
from hub.messages.repair import NotificationRequestedV1
from insurance import domain
from insurance.bootstrap import insurers_from_env
from insurance.client import Insurers
from insurance.domain import FreightCover, InsurerAnswer
from intake.domain import decide
from lab.samples import sample_request
from notify.domain import Audience, plan
from tracker.domain import CaseRecord, fold
from tracker.sla import load_sla
from tracker.stats import compute_stats

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TABLE = load_partners()
POLICY = FreightInsurance(insurer="huatai", policy_no="YF-1", max_claim=Decimal("15.00"))


def opened(
    request_type: RequestType = RequestType.RETURN,
    insurance: FreightInsurance | None = POLICY,
) -> CaseOpenedV1:
    request = sample_request(1, now=NOW, request_type=request_type, freight_insurance=insurance)
    # Bought last week: a return is still within its seven days.
    item = request.item.model_copy(update={"purchase_date": (NOW - timedelta(days=3)).date()})
    (emit,) = decide(request.model_copy(update={"item": item}), None, NOW).emits
    assert isinstance(emit.event, CaseOpenedV1)
    return emit.event


def tracking(
    case_id: str,
    status: TrackingStatus = TrackingStatus.PICKED_UP,
    leg: Leg = Leg.INBOUND,
    courier: str = "sf",
    event_id: str = "e1",
) -> TrackingUpdatedV1:
    return TrackingUpdatedV1(
        case_id=case_id, order_id=f"{case_id}-{leg.value}-1", courier=courier, leg=leg,
        waybill_no="SF0000000000001", status=status, raw_code="50", description="",
        location="杭州市", courier_event_id=event_id, occurred_at=NOW,
    )  # fmt: skip


def covered(case: CaseOpenedV1) -> FreightCover:
    cover = domain.on_case_opened(case, None, NOW).state
    assert cover is not None
    return cover


def filed_claim(decision: Decision[FreightCover]) -> FreightClaimFiledV1:
    (emit,) = decision.emits
    assert isinstance(emit.event, FreightClaimFiledV1)
    return emit.event


def test_an_insured_return_or_exchange_is_remembered_and_nothing_else_is() -> None:
    for kind in (RequestType.RETURN, RequestType.EXCHANGE):
        case = opened(kind)
        assert case.service_mode is ServiceMode.PICKUP
        assert covered(case).insurance == POLICY
    # A repair travels on the hub's account; an uninsured order has nothing to claim.
    assert domain.on_case_opened(opened(RequestType.REPAIR), None, NOW) == Decision()
    assert domain.on_case_opened(opened(insurance=None), None, NOW) == Decision()
    # A case opened again (a replay) keeps what is known.
    case = opened()
    assert domain.on_case_opened(case, covered(case), NOW) == Decision()


def test_the_pickup_claims_the_couriers_freight_capped_by_the_policy() -> None:
    case = opened()
    decision = domain.on_tracking(tracking(case.case_id), covered(case), NOW, table=TABLE)
    claim = filed_claim(decision)
    # SF's price is ¥23.00 (deploy/partners.yaml); the policy pays at most ¥15.00.
    assert (claim.freight, claim.amount) == (Decimal("23.00"), Decimal("15.00"))
    assert claim.claim_id == freight_claim_id(case.case_id) == f"FC-{case.case_id}"
    assert (claim.insurer, claim.policy_no, claim.courier) == ("huatai", "YF-1", "sf")
    assert claim.waybill_no == "SF0000000000001"
    assert decision.state is not None
    assert decision.state.claim == claim
    # Yunda's ¥10.00 is under the cap: claimed in full.
    yunda = domain.on_tracking(
        tracking(case.case_id, courier="yd"), covered(case), NOW, table=TABLE
    )
    assert filed_claim(yunda).amount == Decimal("10.00")


def test_one_claim_per_case_whatever_tracking_follows() -> None:
    case = opened()
    first = domain.on_tracking(tracking(case.case_id), covered(case), NOW, table=TABLE)
    claimed = first.state
    assert claimed is not None
    # Another push of the pickup (a new courier event id), then transit: no second claim.
    for status, event_id in ((TrackingStatus.PICKED_UP, "e2"), (TrackingStatus.IN_TRANSIT, "e3")):
        again = tracking(case.case_id, status, event_id=event_id)
        assert domain.on_tracking(again, claimed, NOW, table=TABLE) == Decision()


def test_only_the_customers_parcel_leaving_is_claimed() -> None:
    case = opened()
    cover = covered(case)
    for status in (TrackingStatus.CREATED, TrackingStatus.FAILED_ATTEMPT):
        assert domain.on_tracking(tracking(case.case_id, status), cover, NOW, table=TABLE) == (
            Decision()
        )
    outbound = tracking(case.case_id, leg=Leg.OUTBOUND)
    assert domain.on_tracking(outbound, cover, NOW, table=TABLE) == Decision()
    # A pickup push that never came: the first transit event proves the courier has it.
    transit = tracking(case.case_id, TrackingStatus.IN_TRANSIT)
    assert filed_claim(domain.on_tracking(transit, cover, NOW, table=TABLE)).amount > 0
    # An uninsured case has no cover: nothing to claim.
    assert domain.on_tracking(tracking("AS-NONE"), None, NOW, table=TABLE) == Decision()


def claimed_case() -> tuple[FreightClaimFiledV1, FreightCover]:
    case = opened()
    decision = domain.on_tracking(tracking(case.case_id), covered(case), NOW, table=TABLE)
    assert decision.state is not None
    return filed_claim(decision), decision.state


def settlement(decision: Decision[FreightCover]) -> FreightClaimSettledV1:
    (emit,) = decision.emits
    assert isinstance(emit.event, FreightClaimSettledV1)
    return emit.event


def test_an_approval_pays_at_most_what_was_claimed_and_ends_the_asking() -> None:
    claim, cover = claimed_case()
    assert domain.needs_filing(cover)
    answer = InsurerAnswer(ClaimOutcome.APPROVED, Decimal("99.00"), insurer_ref="HT-1")
    decision = domain.on_answer(claim, cover, answer, NOW)
    settled = settlement(decision)
    assert (settled.outcome, settled.claimed, settled.paid) == (
        ClaimOutcome.APPROVED, Decimal("15.00"), Decimal("15.00"),
    )  # fmt: skip
    assert (settled.insurer_ref, settled.reason_code, settled.reason) == ("HT-1", "", "")
    assert decision.state is not None
    assert decision.state.settlement == settled
    assert not domain.needs_filing(decision.state)


def test_a_rejection_pays_nothing_and_says_why() -> None:
    claim, cover = claimed_case()
    answer = InsurerAnswer(
        ClaimOutcome.REJECTED, Decimal("15.00"), reason_code="policy_expired", reason="保单已过期"
    )
    settled = settlement(domain.on_answer(claim, cover, answer, NOW))
    assert (settled.outcome, settled.paid) == (ClaimOutcome.REJECTED, Decimal("0.00"))
    assert (settled.reason_code, settled.reason) == ("policy_expired", "保单已过期")


def test_a_claim_read_on_a_fresh_store_is_filed_again_under_the_same_key() -> None:
    claim, _ = claimed_case()
    assert domain.needs_filing(None)
    decision = domain.on_answer(
        claim, None, InsurerAnswer(ClaimOutcome.APPROVED, claim.amount), NOW
    )
    assert settlement(decision).claim_id == claim.claim_id
    assert decision.state is None


def settled_event(outcome: ClaimOutcome, case_id: str) -> FreightClaimSettledV1:
    approved = outcome is ClaimOutcome.APPROVED
    return FreightClaimSettledV1(
        case_id=case_id, claim_id=freight_claim_id(case_id), insurer="huatai", policy_no="YF-1",
        waybill_no="SF0000000000001", outcome=outcome, claimed=Decimal("15.00"),
        paid=Decimal("15.00") if approved else Decimal("0.00"), insurer_ref="HT-1",
        reason_code="" if approved else "policy_expired",
        reason="" if approved else "保单已过保障期", settled_at=NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "locale", "text"),
    [
        (ClaimOutcome.APPROVED, "zh-CN", "退货运费险已理赔 ¥15.00"),
        (ClaimOutcome.APPROVED, "en", "insurance pays ¥15.00 for waybill SF0000000000001"),
        (ClaimOutcome.REJECTED, "zh-CN", "退货运费险理赔未通过:保单已过保障期"),
        (ClaimOutcome.REJECTED, "en", "declined the return-shipping claim (policy_expired)"),
    ],
)
def test_the_customer_is_told_the_outcome_once_per_channel(
    outcome: ClaimOutcome, locale: str, text: str
) -> None:
    case = opened()
    customer = case.customer.model_copy(update={"locale": locale})
    audience = Audience(customer=customer)
    decision = plan(settled_event(outcome, case.case_id), audience, NOW)
    requests = [emit.event for emit in decision.emits]
    assert all(isinstance(r, NotificationRequestedV1) for r in requests)
    assert [r.channel for r in requests] == list(customer.channels)  # type: ignore[attr-defined]
    milestone = f"freight_claim_{outcome.value}"
    assert {r.milestone for r in requests} == {milestone}  # type: ignore[attr-defined]
    assert all(text in r.body for r in requests)  # type: ignore[attr-defined]
    # The same answer read again tells nobody twice.
    assert plan(settled_event(outcome, case.case_id), decision.state, NOW).emits == ()


def test_the_timeline_shows_the_claim_and_its_outcome_and_stats_count_them() -> None:
    sla = load_sla()
    snapshots = []
    for number, outcome in enumerate((ClaimOutcome.APPROVED, ClaimOutcome.REJECTED, None)):
        case = opened()
        case = case.model_copy(update={"case_id": f"{case.case_id}-{number}"})
        record: CaseRecord | None = fold(case, None, NOW, sla).decision.state
        claim = filed_claim(domain.on_tracking(tracking(case.case_id), covered(case), NOW,
                                               table=TABLE))  # fmt: skip
        events: list[FreightClaimFiledV1 | FreightClaimSettledV1] = [claim]
        if outcome is not None:
            events.append(settled_event(outcome, case.case_id))
        for event in events:
            tracked = fold(event, record, NOW, sla)
            assert tracked.not_applied is None
            record = tracked.decision.state
        assert record is not None
        entries = [(e.kind, e.detail) for e in record.snapshot.timeline[1:]]
        assert entries[0] == (
            "freight-claim.filed",
            f"FC-{case.case_id} ¥15.00 from huatai (policy YF-1, sf waybill SF0000000000001)",
        )
        if outcome is ClaimOutcome.APPROVED:
            approved = f"FC-{case.case_id} approved: ¥15.00 paid (HT-1)"
            assert entries[1] == ("freight-claim.settled", approved)
        if outcome is ClaimOutcome.REJECTED:
            assert entries[1][1] == f"FC-{case.case_id} rejected: policy_expired 保单已过保障期"
        assert record.snapshot.status == "approved"  # a claim moves no case along
        snapshots.append(record.snapshot)
    stats = compute_stats(snapshots)
    figures = stats.freight_claims
    assert (figures.claims, figures.approved, figures.rejected, figures.pending) == (3, 1, 1, 1)
    assert (figures.claimed, figures.paid) == ("45.00", "15.00")
    # `hub stats --json` and its tables.
    as_json = json.loads(json.dumps(dataclasses.asdict(stats), default=str))  # as the CLI
    counts = {"claims": 3, "approved": 1, "rejected": 1, "pending": 1}
    assert as_json["freight_claims"] == {**counts, "claimed": "45.00", "paid": "15.00"}
    console = Console(record=True, width=120)
    render_stats(stats, console, "cases")
    text = console.export_text()
    assert "freight claims (退货运费险)" in text
    assert "1 / 1 / 1" in text
    assert "¥45.00 / ¥15.00" in text


def test_hub_run_insurance_names_the_insurer_variables_it_lacks() -> None:
    with pytest.raises(
        ValueError, match="HUB_INSURER_HUATAI_URL, HUB_INSURER_HUATAI_SECRET, "
    ) as e:
        insurers_from_env(TABLE, {"HUB_INSURER_ZHONGAN_URL": "http://127.0.0.1:9"})
    assert "HUB_INSURER_ZHONGAN_URL" not in str(e.value)
    assert "HUB_INSURER_ZHONGAN_SECRET" in str(e.value)
    environ = {
        f"HUB_INSURER_{code}_{part}": "x"
        for code in ("HUATAI", "ZHONGAN")
        for part in ("URL", "SECRET")
    }
    assert isinstance(insurers_from_env(TABLE, environ), Insurers)
    declared = declaration_of("insurance", HubSettings())
    assert declared.adapter is Adapter.INSURER_API
    assert declared.service.inputs == ("aftersales.cases",)
    assert declared.outputs == ("aftersales.cases",)
