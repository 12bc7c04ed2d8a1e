"""The kernel's CPU per record, without a broker: intake's pipeline fed storefront requests.

`python -m lab.bench.hotpath [--count N] [--batch N] [--variant V ...] [--profile FILE]` runs
`Pipeline.process_poll` on batches of preloaded records with a SQLite store and a sink that
drops what it is given, and prints microseconds of CPU per record for each variant:
`bare` (no metrics, no tracing), `metrics`, `traced-10` (metrics, one case in ten traced) and
`traced` (every case). Logs go, as JSON lines at INFO, to /dev/null. Variants alternate
round by round, in an order that rotates; `--profile` writes cProfile statistics of one more
run of the first variant.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hub.core.handler import Route
from hub.core.logging import configure_logging
from hub.core.pipeline import Pipeline
from hub.core.settings import HubSettings
from hub.core.store.base import KafkaRecord
from hub.core.store.sqlite import SqliteStateStore
from hub.core.tracing import configure_tracing, shutdown_tracing
from hub.messages import CATALOGUE
from intake.service import build_service as build_intake
from lab.bench.fixtures import storefront_request
from lab.bench.observability import _Discard

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hub.core.outbound import OutRecord

VARIANTS = ("bare", "metrics", "traced-10", "traced")
TOPIC = "bench.hotpath.requests"
_RUNS = itertools.count()


class _Drop:
    """A sink that acknowledges at once."""

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Drop `records`."""
        del records


def _records(count: int) -> list[KafkaRecord]:
    out = []
    for number in range(count):
        record = storefront_request(number, topic=TOPIC)
        out.append(
            KafkaRecord(TOPIC, 0, number, 1_700_000_000_000 + number, record.key,
                        record.value, tuple(record.headers))
        )  # fmt: skip
    return out


async def _run(variant: str, records: list[KafkaRecord], batch: int, workdir: Path) -> float:
    """CPU seconds per record of one variant over `records`."""
    settings = HubSettings(state_dir=str(workdir), metrics=variant != "bare")
    if variant.startswith("traced"):
        configure_tracing(
            exporter=_Discard(), batch=True, sample_ratio=0.1 if variant == "traced-10" else 1.0
        )
    intake = build_intake(settings)
    service = replace(
        intake,
        group=f"hotpath-{variant}-{next(_RUNS)}",
        inputs=(TOPIC,),
        emits=dict.fromkeys(intake.emits, Route.to(f"{TOPIC}.out")),
    )
    store = SqliteStateStore(workdir / f"{service.group}.sqlite3")
    await store.open()
    pipeline = Pipeline(service, registry=CATALOGUE, store=store, sink=_Drop(), settings=settings)
    try:
        started = time.process_time()
        for first in range(0, len(records), batch):
            await pipeline.process_poll([records[first : first + batch]])
        return (time.process_time() - started) / len(records)
    finally:
        await store.close()
        shutdown_tracing()


async def measure(
    variants: Sequence[str], rounds: int, count: int, batch: int, profile: Path | None
) -> dict[str, list[float]]:
    """CPU µs per record of each variant, round by round."""
    records = _records(count)
    results: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="hub-hotpath-") as workdir:
        await _run(variants[0], records[: min(count, 500)], batch, Path(workdir))  # warm-up
        for round_ in range(rounds):
            # The order rotates: no variant is always the one that runs on a fuller heap.
            turn = round_ % len(variants)
            for variant in [*variants[turn:], *variants[:turn]]:
                gc.collect()
                seconds = await _run(variant, records, batch, Path(workdir))
                results[variant].append(seconds * 1e6)
        if profile is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            await _run(variants[0], records, batch, Path(workdir))
            profiler.disable()
            profiler.dump_stats(str(profile))
    return results


def main() -> None:
    """Entry point: measure, then print µs per record and each variant's cost over `bare`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=VARIANTS)
    parser.add_argument("--profile", type=Path)
    options = parser.parse_args()
    variants = tuple(options.variant or VARIANTS)
    # The canonical lines are written, as in production, to a file nobody reads (a plain file
    # object: a NamedTemporaryFile's wrapper would cost per line).
    with Path(os.devnull).open("w") as sink:
        sys.stderr, stderr = sink, sys.stderr
        try:
            configure_logging("INFO", "json")
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
            results = asyncio.run(
                measure(variants, options.rounds, options.count, options.batch, options.profile)
            )
        finally:
            sys.stderr = stderr
    bare = results.get("bare")
    for variant, samples in results.items():
        line = f"{variant:<10} {statistics.median(samples):7.1f} µs/record  " + " ".join(
            f"{s:.1f}" for s in samples
        )
        if bare is not None and variant != "bare":
            costs = [s / b - 1 for s, b in zip(samples, bare, strict=True)]
            line += f"  cost {statistics.median(costs):+.1%}"
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
