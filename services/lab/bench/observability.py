"""What metrics and tracing cost the hub's hop: three variants alternated in one run.

`python -m lab.bench.observability [--rounds N] [--count N]` against KAFKA_BOOTSTRAP_SERVERS
(or HUB_KAFKA_BOOTSTRAP_SERVERS). Each round runs intake through ServiceRuntime on the same
preloaded requests, under a fresh group and store, as: `bare` (HUB_METRICS=false, no tracing),
`metrics` (as deployed by default) and `traced` (metrics, and a span per record batched to an
exporter that drops them: the SDK's cost without a collector's), and `traced-10` (one case in
ten traced, HUB_TRACING_SAMPLE_RATIO=0.1). The rounds alternate the
variants so that the drift of a shared machine hits each alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from hub.core.handler import Route
from hub.core.logging import configure_logging
from hub.core.service import ServiceRuntime
from hub.core.settings import HarnessSettings, HubSettings
from hub.core.topics import Subscription, apply_topics, declare
from hub.core.tracing import configure_tracing, shutdown_tracing
from hub.messages import CATALOGUE
from intake.service import build_service as build_intake
from lab.bench.fixtures import produce_all, storefront_request
from lab.harness.kafka import LocalKafka

if TYPE_CHECKING:
    from collections.abc import Sequence

    from faststream.kafka.annotations import KafkaMessage
    from opentelemetry.sdk.trace import ReadableSpan

    from hub.core.handler import Service

VARIANTS = ("bare", "metrics", "traced", "traced-10")
TIMEOUT_S = 300.0


class _Discard(SpanExporter):
    """Takes spans and drops them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Drop `spans`."""
        del spans
        return SpanExportResult.SUCCESS


class _Timed(ServiceRuntime):
    """ServiceRuntime, unchanged, timed from the first poll to the last record's commit."""

    expected = 0
    done = 0
    first: float | None = None
    last = 0.0
    finished: asyncio.Event

    async def _consume(self, message: KafkaMessage) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        await super()._consume(message)
        self.done += len(message.raw_message)  # type: ignore[arg-type]
        self.last = time.perf_counter()
        if self.done >= self.expected:
            self.finished.set()


def _intake(settings: HubSettings, group: str, topic: str) -> Service:
    """Intake under its own group, reading `topic`; its outputs go to `<topic>.out`."""
    intake = build_intake(settings)
    emits = dict.fromkeys(intake.emits, Route.to(f"{topic}.out"))
    return replace(intake, group=group, inputs=(topic,), emits=emits)


async def _round(settings: HubSettings, spec: tuple[str, str, str], count: int) -> float:
    variant, group, topic = spec
    if variant == "bare":
        settings = settings.model_copy(update={"metrics": False})
    if variant.startswith("traced"):
        ratio = 0.1 if variant == "traced-10" else 1.0
        configure_tracing(exporter=_Discard(), batch=True, sample_ratio=ratio)
    service = _intake(settings, group, topic)
    runtime = _Timed(service, settings, registry=CATALOGUE)
    runtime.expected, runtime.finished = count, asyncio.Event()
    try:
        async with runtime:
            await asyncio.wait_for(runtime.finished.wait(), TIMEOUT_S)
    finally:
        shutdown_tracing()
    assert runtime.first is not None  # noqa: S101 - finished implies a first poll
    return runtime.done / (runtime.last - runtime.first)


async def measure(rounds: int, count: int) -> dict[str, list[float]]:
    """Records per second of each variant, round by round."""
    run = uuid.uuid4().hex[:6]
    with (
        tempfile.TemporaryDirectory(prefix="hub-observe-bench-") as workdir,
        contextlib.ExitStack() as broker,
    ):
        # Like `make bench`: a cluster of the caller's, or a local broker of the run's own.
        bootstrap = HarnessSettings().kafka_bootstrap_servers
        if not bootstrap:
            kafka = broker.enter_context(LocalKafka(nodes=1, base_dir=Path(workdir) / "kafka"))
            bootstrap = kafka.bootstrap_servers
        settings = HubSettings(
            kafka_bootstrap_servers=bootstrap,
            state_dir=workdir,
            log_level="WARNING",
            log_format="json",
        )
        topic = f"bench.observe.{run}.requests"
        groups = {(v, r): f"bench-observe-{run}-{v}-r{r}" for v in VARIANTS for r in range(rounds)}
        subscriptions = [Subscription(group, (topic,)) for group in groups.values()]
        await apply_topics(
            settings.kafka_bootstrap_servers,
            declare(settings, subscriptions, [topic, f"{topic}.out"]),
        )
        records = [storefront_request(i, topic=topic) for i in range(count)]
        await produce_all(settings.kafka_bootstrap_servers, records)
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_ in range(rounds):
            # The order rotates too: a variant is not always the one after a warm cache.
            turn = round_ % len(VARIANTS)
            for variant in VARIANTS[turn:] + VARIANTS[:turn]:
                state = Path(workdir) / f"{variant}-r{round_}"
                rate = await _round(
                    settings.model_copy(update={"state_dir": str(state)}),
                    (variant, groups[variant, round_], topic),
                    count,
                )
                rates[variant].append(rate)
                print(f"round {round_ + 1}/{rounds} {variant:<8} {rate:8.1f} records/s")  # noqa: T201
        return rates


def report(rates: dict[str, list[float]]) -> list[str]:
    """Medians and the same-round cost of metrics and of metrics with tracing."""
    lines = [
        f"{v:<8} median {statistics.median(r):8.1f} records/s  ({min(r):.0f}..{max(r):.0f})"
        for v, r in rates.items()
    ]
    for variant in VARIANTS[1:]:
        costs = [1 - a / b for a, b in zip(rates[variant], rates["bare"], strict=True)]
        lines.append(
            f"cost of {variant:<9} median {statistics.median(costs):+.1%} of the bare rate "
            f"(per round: {', '.join(f'{c:+.1%}' for c in costs)})"
        )
    return lines


def main() -> None:
    """Entry point: measure, then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=3000)
    options = parser.parse_args()
    configure_logging("WARNING", "json")
    rates = asyncio.run(measure(options.rounds, options.count))
    sys.stdout.write("\n".join(report(rates)) + "\n")


if __name__ == "__main__":
    main()
