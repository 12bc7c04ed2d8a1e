"""Wiring of the tracker: every case event in, status snapshots and SLA escalations out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from hub.core.handler import Decision, Handler, Incoming, Route, Service, routes
from hub.core.topics import CASE_STATUS, CASES, NOTIFICATION_REQUESTS
from hub.messages.repair import NotificationRequestedV1
from hub.messages.tracker import CaseStatusV1, RatingRejectedV1, SlaBreachedV1, SlaCheckDueV1
from tracker import domain
from tracker.sla import SlaTable, load_sla

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

GROUP = "tracker"

log = structlog.get_logger(__name__)


def build_service(
    settings: HubSettings, sla: SlaTable | None = None, *, group: str = GROUP
) -> Service:
    """The tracker consumer group, with the SLA thresholds of `sla` (deploy/sla.yaml)."""
    table = sla or load_sla()

    def track(incoming: Incoming[Any]) -> Decision:
        tracked = domain.track(incoming.event, incoming.state, at=incoming.envelope.time, sla=table)
        if tracked.duplicate:
            log.info("case_event_duplicate", event_type=incoming.event.event_type)
        elif tracked.not_applied is not None:
            # Kept in the timeline, marked not applied; said here so operators see it too.
            log.warning(
                "case_event_not_applied",
                event_type=incoming.event.event_type,
                reason=tracked.not_applied,
            )
        return tracked.decision

    families = [model.event_type for model in domain.TRACKED]
    handlers: dict[str, Handler] = dict.fromkeys([*families, SlaCheckDueV1.event_type], track)
    return Service(
        group=group,
        inputs=(CASES,),
        handlers=handlers,
        source=f"{settings.source}/{GROUP}",
        timers=table.timer_delays,
        emits={
            **routes(Route.to(CASE_STATUS), CaseStatusV1),
            **routes(Route.to(CASES), SlaBreachedV1, RatingRejectedV1),
            **routes(Route.to(NOTIFICATION_REQUESTS), NotificationRequestedV1),
        },
    )
