"""A case's status and timeline as the tracker keeps them, for `GET /cases/{case_id}`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from hub.messages.tracker import CaseStatusV1, PickupOrderState, TimelineEntry

if TYPE_CHECKING:
    from hub.core.store.base import StateStore


class CaseAnswer(BaseModel):
    """What a backend sees of a case: where it stands and how it got there."""

    case_id: str
    status: str = Field(description="submitted, approved, pickup_requested, ... closed.")
    updated_at: datetime
    request_type: str
    service_mode: str
    category: str
    courier: str | None
    milestones: dict[str, datetime] = Field(description="When the case first reached each.")
    pickup_orders: list[PickupOrderState]
    in_arbitration: bool
    timeline: list[TimelineEntry] = Field(description="Every event of the case, oldest first.")


class CaseReader:
    """Reads the snapshot the tracker keeps in its state store, one key per case."""

    def __init__(self, store: StateStore, group: str) -> None:
        self._store = store
        self._group = group

    async def case(self, case_id: str) -> CaseAnswer | None:
        """The case, or None when the tracker has not seen it (yet)."""
        state = await self._store.load_state(self._group, case_id)
        if state is None or "snapshot" not in state:
            return None
        snapshot = CaseStatusV1.model_validate(state["snapshot"])
        return CaseAnswer(
            case_id=snapshot.case_id,
            status=snapshot.status,
            updated_at=snapshot.updated_at,
            request_type=snapshot.request_type,
            service_mode=snapshot.service_mode,
            category=snapshot.category,
            courier=snapshot.courier,
            milestones=snapshot.milestones,
            pickup_orders=list(snapshot.pickup_orders),
            in_arbitration=snapshot.in_arbitration,
            timeline=list(snapshot.timeline),
        )
