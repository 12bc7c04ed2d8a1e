"""The one place that knows every service: used by the CLI to run services and declare topics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core.topics import Subscription, declare
from intake.service import build_service as build_intake

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.handler import Service
    from hub.core.settings import HubSettings
    from hub.core.topics import TopicSpec

SERVICES: dict[str, Callable[[HubSettings], Service]] = {
    "intake": build_intake,
}


def all_topics(settings: HubSettings) -> list[TopicSpec]:
    """Every topic of every service, as declared in code."""
    services = [build(settings) for build in SERVICES.values()]
    return declare(settings, [Subscription(s.group, s.inputs) for s in services])
