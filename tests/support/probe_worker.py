"""A probe service process for kill and shutdown tests: `python probe_worker.py GROUP IN OUT`."""

from __future__ import annotations

import asyncio
import sys

from probe import REGISTRY, FaultPlan, probe_service

from hub.core.logging import configure_logging
from hub.core.service import ServiceRuntime
from hub.core.settings import HubSettings


def main() -> None:
    """Run the probe service until SIGTERM (drain) or SIGKILL (crash)."""
    group, input_topic, output_topic = sys.argv[1:4]
    settings = HubSettings()
    configure_logging("WARNING", "json")
    service = probe_service(group, input_topic, output_topic, FaultPlan())
    runtime = ServiceRuntime(service, settings, registry=REGISTRY)
    asyncio.run(runtime.application().run())


if __name__ == "__main__":
    main()
