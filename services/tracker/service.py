"""Declaration of the tracker: every case event in, status snapshots and SLA escalations out."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from hub.core.handler import Handler, Route, Service, routes
from hub.core.topics import (
    CASE_STATUS,
    CASES,
    COURIER_OBSERVATIONS,
    COURIER_SCORES,
    NOTIFICATION_REQUESTS,
)
from hub.messages.repair import NotificationRequestedV1
from hub.messages.scores import CourierObservedV1, CourierScoreDueV1, CourierScoredV1
from hub.messages.tracker import CaseStatusV1, RatingRejectedV1, SlaBreachedV1, SlaCheckDueV1
from tracker import domain, scoring
from tracker.sla import SlaTable, load_sla

if TYPE_CHECKING:
    from hub.core.registry import Event
    from hub.core.settings import HubSettings

GROUP = "tracker"


def build_service(
    settings: HubSettings, sla: SlaTable | None = None, *, group: str = GROUP
) -> Service:
    """The tracker consumer group, with the SLA thresholds of `sla` (deploy/sla.yaml)."""
    table = sla or load_sla()
    track = partial(domain.track, sla=table)
    families: tuple[type[Event], ...] = (*domain.TRACKED, SlaCheckDueV1)
    handlers: dict[str, Handler] = {model.event_type: track for model in families}
    return Service(
        group=group,
        inputs=(CASES,),
        handlers=handlers,
        source=f"{settings.source}/{GROUP}",
        state_model=domain.CaseRecord,
        timers=table.timer_delays,
        emits={
            **routes(Route.to(CASE_STATUS), CaseStatusV1),
            **routes(Route.to(CASES), SlaBreachedV1, RatingRejectedV1),
            **routes(Route.to(NOTIFICATION_REQUESTS), NotificationRequestedV1),
            **routes(Route.to(COURIER_OBSERVATIONS), CourierObservedV1),
        },
    )


SCORES_GROUP = "courier-scores"


def build_scores_service(settings: HubSettings) -> Service:
    """Group `courier-scores`: the tracker's courier observations in, one scorecard per courier.

    Keyed by courier code, so each courier's window lives in one partition (and one instance).
    """
    policy = scoring.ScorePolicy.from_settings(settings)
    handlers: dict[str, Handler] = {
        CourierObservedV1.event_type: partial(scoring.on_observed, policy=policy),
        CourierScoreDueV1.event_type: partial(scoring.on_score_due, policy=policy),
    }
    return Service(
        group=SCORES_GROUP,
        inputs=(COURIER_OBSERVATIONS,),
        handlers=handlers,
        source=f"{settings.source}/{SCORES_GROUP}",
        state_model=scoring.CourierWindow,
        timers=(policy.interval,),
        emits=routes(Route.to(COURIER_SCORES), CourierScoredV1),
    )
