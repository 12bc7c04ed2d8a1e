"""Audit events of operator actions, written to `hub.ops.audit` before an action reports done."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import structlog

from hub.core.outbound import OutRecord, event_record
from hub.core.settings import OperatorSettings
from hub.core.topics import AUDIT

if TYPE_CHECKING:
    from hub.core.outbound import RecordSink
    from hub.messages.ops import OpsActionAuditedV1

log = structlog.get_logger(__name__)


def operator() -> str:
    """Who acts: `HUB_OPERATOR`, else the login name."""
    return OperatorSettings().operator or getpass.getuser()


def audit_record(event: OpsActionAuditedV1, *, source: str) -> OutRecord:
    """The audit record of one action, keyed by its group so one service's trail stays ordered."""
    return event_record(AUDIT, event, key=event.group or "-", source=f"{source}/ops", time=event.at)


async def write_audit(sink: RecordSink, event: OpsActionAuditedV1, *, source: str) -> None:
    """Publish one audit event and wait for the broker's acknowledgement."""
    await sink.send([audit_record(event, source=source)])
    log.info(
        "ops_action_audited",
        action=event.action,
        actor=event.actor,
        count=event.count,
        group=event.group,
        replay_id=event.replay_id,
    )
