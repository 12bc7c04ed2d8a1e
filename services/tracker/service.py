"""Declaration of the tracker: every case event in, status snapshots and SLA escalations out."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from hub.core.handler import Handler, Route, Service, routes
from hub.core.topics import CASE_STATUS, CASES, NOTIFICATION_REQUESTS
from hub.messages.repair import NotificationRequestedV1
from hub.messages.tracker import CaseStatusV1, RatingRejectedV1, SlaBreachedV1, SlaCheckDueV1
from tracker import domain
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
        },
    )
