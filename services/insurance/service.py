"""Declaration of the insurance group: insured cases claim their return freight after pickup."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from dispatch.partners import PartnerTable, load_partners
from hub.core.handler import Decision, Route, Service, routes
from hub.core.topics import CASES
from hub.messages.cases import CaseOpenedV1, TrackingUpdatedV1
from hub.messages.insurance import FreightClaimFiledV1, FreightClaimSettledV1
from insurance import domain

if TYPE_CHECKING:
    from datetime import datetime

    from hub.core.handler import Handler
    from hub.core.settings import HubSettings
    from insurance.domain import ClaimPort, FreightCover

GROUP = "insurance"


def declare_insurance(settings: HubSettings) -> Service:
    """Group `insurance`: reads case events, writes the freight claims and their answers.

    Its handlers come with its adapter, the insurers' API clients (`build_service`).
    """
    return Service(
        group=GROUP,
        inputs=(CASES,),
        handlers={},
        source=f"{settings.source}/{GROUP}",
        state_model=domain.FreightCover,
        concurrency=settings.partner_concurrency,
        emits=routes(Route.to(CASES), FreightClaimFiledV1, FreightClaimSettledV1),
    )


def build_service(
    settings: HubSettings, insurers: ClaimPort, table: PartnerTable | None = None
) -> Service:
    """The insurance group with its handlers: pure decisions, and each claim one API call.

    The claim is first a case event (filed), then the call: the case keeps the answer, so a
    claim read again asks nobody, and one read again before its answer was kept asks the
    insurer under the same claim id, which answers as it did the first time.
    """
    table = table or load_partners()

    async def file(
        claim: FreightClaimFiledV1, cover: FreightCover | None, at: datetime
    ) -> Decision[FreightCover]:
        if not domain.needs_filing(cover):
            return Decision()
        answer = await insurers.file(claim)
        return domain.on_answer(claim, cover, answer, at)

    handlers: dict[str, Handler] = {
        CaseOpenedV1.event_type: domain.on_case_opened,
        TrackingUpdatedV1.event_type: partial(domain.on_tracking, table=table),
        FreightClaimFiledV1.event_type: file,
    }
    return replace(declare_insurance(settings), handlers=handlers)
