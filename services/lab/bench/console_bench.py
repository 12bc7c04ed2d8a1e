"""`make bench-console`: the console's pages timed with 100,000 dead letters on a real broker.

Loads dead letters shaped like the hub's own (contract headers, a traceback, a storefront-sized
body) across several groups and kinds of failure, starts the console in this process and times
each page over HTTP: the first view after the letters arrived, then the median of warm views.
Not a test: it prints the figures for the README and the issue's closing note.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import structlog
import typer
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from hub.console.app import Console as ConsoleState
from hub.console.app import create_app
from hub.console.auth import hash_password
from hub.console.server import BackgroundServer
from hub.console.settings import ConsoleSettings, Operator
from hub.core import deadletter
from hub.core.connection import kafka_security
from hub.core.errors import Stage, fingerprint
from hub.core.logging import configure_logging
from hub.core.outbound import event_record
from hub.core.settings import HubSettings
from hub.core.topics import Subscription, apply_topics, dead_letter_topic, declare
from hub.ops.dlq import Selection
from lab.harness.kafka import LocalKafka
from lab.samples import sample_request_v2

log = structlog.get_logger(__name__)
app = typer.Typer(add_completion=False)
out = Console()

USER, PASSWORD = "bench", "bench-password"
GROUPS = ("intake", "dispatch", "repair", "notify")
INPUT = "bench.console-in"
# Kinds of failure per group, by weight: a few large groups and a long tail, as in real life.
KINDS: tuple[tuple[str, str, Stage, int], ...] = (
    (
        "hub.core.errors.SchemaViolationError",
        "customer.phone: String should match pattern",
        "validate",
        50,
    ),
    ("builtins.TimeoutError", "partner did not answer within 2.0s", "handle", 25),
    (
        "hub.core.errors.UnknownEventTypeError",
        "unknown version of storefront.aftersales.requested: v9",
        "validate",
        15,
    ),
    ("hub.core.errors.PermanentError", "courier SF refused order 8177: peak capacity", "handle", 9),
    ("hub.core.errors.UndecodableError", "body is not JSON", "decode", 1),
)
WARM_VIEWS = 5
# Sends awaited together: enough to keep the producer's batches full.
SEND_WINDOW = 5000
NEW_LETTERS = 1000


@dataclass(frozen=True, slots=True)
class Timing:
    """One page: the first view and the median of the warm views after it, in milliseconds."""

    page: str
    first_ms: float
    warm_ms: float
    size_kb: float


def _kind(number: int) -> tuple[str, str, Stage]:
    slot = number % 100
    for error_class, message, stage, weight in KINDS:
        if slot < weight:
            return error_class, message, stage
        slot -= weight
    return KINDS[0][:3]


async def load_letters(settings: HubSettings, count: int, *, first: int = 0) -> float:
    """Produce `count` dead letters spread over the groups and the last 24 hours; seconds taken.

    Numbered from `first`, so that a second load adds letters with other ids and times.
    """
    await apply_topics(
        settings.kafka_bootstrap_servers,
        declare(settings, [Subscription(group, (INPUT,)) for group in GROUPS]),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type="lz4" if _has_lz4() else None,
        **kafka_security(settings),
    )
    started = time.perf_counter()
    now = datetime.now(UTC)
    await producer.start()
    try:
        pending = []
        for number in range(first, first + count):
            group = GROUPS[number % len(GROUPS)]
            error_class, message, stage = _kind(number // len(GROUPS))
            request = sample_request_v2(number)
            original = event_record(
                INPUT, request, key=request.request_id, source="urn:storefront:mall"
            )
            at = now - timedelta(seconds=86_400 * (first + count - number) / (first + count))
            failure = (
                ("x-hub-origin-topic", INPUT),
                ("x-hub-origin-partition", str(number % 3)),
                ("x-hub-origin-offset", str(number)),
                ("x-hub-origin-timestamp", str(int(at.timestamp() * 1000))),
                ("x-hub-origin-group", group),
                ("x-hub-origin-handler", f"{group}.service.handle"),
                ("x-hub-error-class", error_class),
                ("x-hub-error-message", f"{message} (record {number})"),
                ("x-hub-error-stacktrace", "Traceback (most recent call last):\n" + "  ...\n" * 60),
                ("x-hub-error-stage", stage),
                ("x-hub-error-fingerprint", fingerprint(error_class, message, stage)),
                (deadletter.ATTEMPTS, "8"),
                (deadletter.FIRST_FAILURE_AT, at.isoformat()),
                ("x-hub-code-version", "bench"),
                ("x-hub-schema", "storefront.aftersales.requested.v2"),
                ("x-hub-idempotency-key", dict(original.headers)["ce_id"].decode()),
            )
            headers = [*original.headers, *((n, v.encode()) for n, v in failure)]
            pending.append(
                await producer.send(
                    dead_letter_topic(INPUT, group),
                    original.value,
                    key=original.key,
                    headers=headers,
                    timestamp_ms=int(at.timestamp() * 1000),
                )
            )
            if len(pending) >= SEND_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _has_lz4() -> bool:
    try:
        import lz4  # type: ignore[import-not-found]  # noqa: F401, PLC0415 - optional codec
    except ImportError:
        return False
    return True


def _sign_in(client: httpx.Client) -> None:
    form = client.get("/login")
    token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/login", data={"csrf": token, "name": USER, "password": PASSWORD, "next": "/"}
    )
    answer.raise_for_status()
    if "signed in as" not in answer.text:
        raise RuntimeError("the bench could not sign in")


def _time(client: httpx.Client, page: str, path: str) -> Timing:
    def view() -> tuple[float, int]:
        started = time.perf_counter()
        answer = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        return elapsed, len(answer.content)

    first, size = view()
    warm = [view()[0] for _ in range(WARM_VIEWS)]
    return Timing(page, first, statistics.median(warm), size / 1024)


def _wait_indexed(state: ConsoleState, count: int, timeout_s: float) -> float:
    started = time.perf_counter()
    deadline = started + timeout_s
    while True:
        snapshot = state.index.snapshot
        if snapshot.caught_up and len(snapshot.letters) >= count:
            return time.perf_counter() - started
        if time.perf_counter() > deadline:
            raise RuntimeError(f"indexed {len(snapshot.letters)} of {count} in {timeout_s}s")
        time.sleep(0.1)


def run(settings: HubSettings, letters: int) -> None:
    """Load the letters, serve the console, time every page, print the table."""
    loaded_s = asyncio.run(load_letters(settings, letters))
    out.print(f"loaded {letters:,} dead letters in {loaded_s:.1f}s")
    config = ConsoleSettings.model_validate(
        {
            "operators": {
                USER: Operator(password_hash=SecretStr(hash_password(PASSWORD)), role="operator")
            },
            "refresh_s": 1.0,
        }
    )
    fastapi_app = create_app(settings, config)
    server = BackgroundServer(fastapi_app)
    started = time.perf_counter()
    server.start_blocking()
    try:
        state: ConsoleState = fastapi_app.state.console
        indexed_s = _wait_indexed(state, letters, timeout_s=600) + time.perf_counter() - started
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.print(
            f"console started and read all {letters:,} dead letters in {indexed_s:.1f}s "
            f"(once, at start; later refreshes read only new letters); peak RSS {rss_mb:.0f} MB"
        )
        snapshot = state.index.snapshot
        fp = snapshot.groups("dispatch")[1]
        one = snapshot.selected(Selection(group="repair"))
        ref = str(one[len(one) // 2].ref)
        pages = [
            ("overview", "/"),
            ("groups, all", "/groups"),
            ("groups of one service", "/groups?group=intake"),
            ("letters, page 1", "/letters"),
            ("letters, page 1000", "/letters?page=1000"),
            ("letters of one fingerprint", f"/letters?group=dispatch&fingerprint={fp.fingerprint}"),
            ("one letter (reads its record)", f"/letter?ref={ref}"),
            ("dry-run form", "/dry-run?group=notify"),
            ("replays", "/replays"),
            ("audit trail, 24 h", "/audit"),
        ]
        with httpx.Client(base_url=server.url, timeout=120, follow_redirects=True) as client:
            _sign_in(client)
            timings = [_time(client, page, path) for page, path in pages]
            timings.append(_time_dry_run(client, fp.fingerprint, fp.count))
            timings += _after_new_letters(settings, state, client, letters)
    finally:
        server.stop_blocking()
    table = Table(title=f"console pages with {letters:,} dead letters ({len(GROUPS)} groups)")
    for column in ("page", "first view ms", f"median of {WARM_VIEWS} warm ms", "KB"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for t in timings:
        table.add_row(t.page, f"{t.first_ms:.0f}", f"{t.warm_ms:.0f}", f"{t.size_kb:.0f}")
    out.print(table)


def _time_dry_run(client: httpx.Client, fp: str, count: int) -> Timing:
    """A dry-run is an action, not a page: it reads the group's letters whole, as the CLI does."""
    page = client.get(f"/dry-run?group=dispatch&fingerprint={fp}")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    started = time.perf_counter()
    answer = client.post("/dry-run", data={"csrf": token, "group": "dispatch", "fingerprint": fp})
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    return Timing(
        f"action: dry-run of {count:,} letters", elapsed, elapsed, len(answer.content) / 1024
    )


def _after_new_letters(
    settings: HubSettings, state: ConsoleState, client: httpx.Client, letters: int
) -> list[Timing]:
    """Add letters while the console runs: they are read alone, and pages stay fast."""
    asyncio.run(load_letters(settings, NEW_LETTERS, first=letters))
    seen_s = _wait_indexed(state, letters + NEW_LETTERS, timeout_s=60)
    out.print(f"{NEW_LETTERS:,} new dead letters were on the overview {seen_s:.1f}s after sending")
    return [
        _time(client, f"{name}, after {NEW_LETTERS:,} new letters", path)
        for name, path in (
            ("overview", "/"),
            ("groups", "/groups"),
            ("letters, page 1", "/letters"),
        )
    ]


@app.command()
def main(
    letters: Annotated[int, typer.Option(min=100, help="Dead letters to load.")] = 100_000,
    bootstrap: Annotated[
        str | None, typer.Option(help="An existing broker (default: start a local one).")
    ] = None,
) -> None:
    """Time the console's pages with many dead letters on a real broker."""
    configure_logging("WARNING", "console")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with ExitStack() as stack:
        if bootstrap is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-")))
            kafka = stack.enter_context(LocalKafka(nodes=1, base_dir=base))
            bootstrap = kafka.bootstrap_servers
        state = stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-state-"))
        settings = HubSettings.model_validate(
            {"kafka_bootstrap_servers": bootstrap, "state_dir": state, "log_format": "console"}
        )
        os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
        run(settings, letters)


if __name__ == "__main__":
    app()
