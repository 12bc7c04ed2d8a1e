"""Prometheus metrics of every hub process, defined once; the kernel and edge adapters record.

All live in prometheus-client's default registry (with its process and GC collectors), which
`/metrics` serves; several services in one process tell their series apart by `group`.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import httpx
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from hub.core.errors import http_status_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Sequence

P = ParamSpec("P")
T = TypeVar("T")

# Handling a record is milliseconds when it goes well, seconds when in-process retries back off.
_HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

RECORDS = Counter("hub_records", "Records taken to an outcome.", ["group", "topic", "outcome"])
HANDLING = Histogram(
    "hub_record_handling_seconds",
    "Time from reading a record to its outcome (in-process retries included).",
    ["group"],
    buckets=_HANDLING_BUCKETS,
)
BATCH = Histogram(
    "hub_batch_records", "Records in one partition's unit of work.", ["group"],
    buckets=_BATCH_BUCKETS,
)  # fmt: skip
DEAD_LETTERS = Counter(
    "hub_dead_letters", "Records sent to a dead-letter topic.", ["group", "topic"]
)
RETRIES = Counter("hub_retries_scheduled", "Records sent to a retry topic.", ["group", "topic"])
STALE_UNITS = Counter(
    "hub_stale_units",
    "Units of work not written because a state they read changed meanwhile (another member "
    "decided for the same key, as after a rebalance); their records are read again.",
    ["group"],
)
PARKED_KEYS = Gauge(
    "hub_parked_keys",
    "Keys this process parked behind a retrying record and has not released yet.",
    ["group"],
)
EMITTED = Counter(
    "hub_events_emitted", "Output events rendered by handlers, by CloudEvents type.",
    ["group", "type"],
)  # fmt: skip
SLA_BREACHES = Counter("hub_sla_breaches", "SLA breach events emitted by the tracker.", ["group"])
LAG = Gauge(
    "hub_consumer_lag",
    "Records behind the partition's high watermark after the last unit of work.",
    ["group", "topic", "partition"],
)
CONSUMING = Gauge("hub_consuming", "1 while the group's subscriber runs.", ["group"])
PARTNER_CALLS = Histogram(
    "hub_partner_call_seconds",
    "Partner API calls by partner and result (HTTP status, or the error's class).",
    ["partner", "result"],
    buckets=_CALL_BUCKETS,
)
NOTIFICATIONS = Counter(
    "hub_notifications", "Notification sends by channel and result.", ["channel", "result"]
)
WEBHOOK_REFUSED = Counter(
    "hub_webhook_refused", "Partner pushes refused for a bad or stale signature.", ["partner"]
)
INGRESS_REQUESTS = Histogram(
    "hub_ingress_request_seconds",
    "Requests of the HTTP front door by route and status, timed to the answer.",
    ["route", "status"],
    buckets=_HANDLING_BUCKETS,
)

SLA_BREACH_TYPE = "aftersales.sla.breached"
"""Family of the tracker's SlaBreached events (`ce_type` is `<family>.v<n>`)."""


def registry_text() -> bytes:
    """The default registry in Prometheus' text format."""
    from prometheus_client import generate_latest  # noqa: PLC0415 - one caller, /metrics

    return generate_latest(REGISTRY)


class PipelineMetrics:
    """What a pipeline reports, with its group's label children resolved once.

    Per-record counts are gathered in plain dictionaries and added to the counters once per
    poll (`flush`): a counter's increment takes a lock, a dictionary's does not.
    """

    __slots__ = (
        "_batch", "_dead", "_emitted", "_group", "_handling", "_outcomes", "_parked",
        "_pending_emitted", "_pending_outcomes", "_pending_seconds", "_records", "_retries",
        "_stale",
    )  # fmt: skip

    def __init__(self, group: str, topics: Iterable[str]) -> None:
        self._group = group
        self._handling = HANDLING.labels(group)
        self._batch = BATCH.labels(group)
        self._parked = PARKED_KEYS.labels(group)
        self._stale = STALE_UNITS.labels(group)
        self._records: dict[tuple[str, str], Counter] = {}
        self._emitted: dict[str, tuple[Counter, Counter | None]] = {}
        self._pending_outcomes: dict[tuple[str, str], int] = {}
        self._pending_emitted: dict[str, int] = {}
        self._pending_seconds: list[float] = []
        # Created at zero so that the first dead letter is an increase Prometheus can see.
        self._dead = {topic: DEAD_LETTERS.labels(group, topic) for topic in topics}
        self._retries = {topic: RETRIES.labels(group, topic) for topic in topics}

    def batch(self, size: int) -> None:
        """A unit of work of `size` records began."""
        self._batch.observe(size)

    def handled(self, topic: str, outcome: str, seconds: float | None = None) -> None:
        """One record reached `outcome` (a parked follower's time is its head's: no seconds)."""
        pending = self._pending_outcomes
        pending[topic, outcome] = pending.get((topic, outcome), 0) + 1
        if seconds is not None:
            self._pending_seconds.append(seconds)

    def emitted(self, ce_types: Iterable[str]) -> None:
        """Outputs rendered by a handler, by `ce_type` (SLA breaches counted on their own)."""
        pending = self._pending_emitted
        for ce_type in ce_types:
            pending[ce_type] = pending.get(ce_type, 0) + 1

    def flush(self) -> None:
        """Add what the poll counted to the counters and the handling-time histogram."""
        if self._pending_seconds:
            _observe_all(self._handling, self._pending_seconds)
            self._pending_seconds.clear()
        if self._pending_outcomes:
            for (topic, outcome), count in self._pending_outcomes.items():
                child = self._records.get((topic, outcome))
                if child is None:
                    child = RECORDS.labels(self._group, topic, outcome)
                    self._records[topic, outcome] = child
                child.inc(count)
            self._pending_outcomes.clear()
        if self._pending_emitted:
            for ce_type, count in self._pending_emitted.items():
                children = self._emitted.get(ce_type)
                if children is None:
                    breach = ce_type.startswith(f"{SLA_BREACH_TYPE}.")
                    children = self._emitted[ce_type] = (
                        EMITTED.labels(self._group, ce_type),
                        SLA_BREACHES.labels(self._group) if breach else None,
                    )
                for child in children:
                    if child is not None:
                        child.inc(count)
            self._pending_emitted.clear()

    def dead_lettered(self, topic: str) -> None:
        """A record of `topic` went to its dead-letter topic."""
        child = self._dead.get(topic) or DEAD_LETTERS.labels(self._group, topic)
        child.inc()

    def retry_scheduled(self, topic: str) -> None:
        """A record of `topic` went to a retry topic."""
        child = self._retries.get(topic) or RETRIES.labels(self._group, topic)
        child.inc()

    def key_parked(self) -> None:
        """A key now waits behind a retrying record."""
        self._parked.inc()

    def stale_unit(self) -> None:
        """A unit of work was refused: a state it read had changed."""
        self._stale.inc()

    def key_released(self) -> None:
        """A parked key goes on."""
        self._parked.dec()


class NoMetrics(PipelineMetrics):
    """Records nothing: HUB_METRICS=false, and the bench's baseline."""

    def __init__(self) -> None:
        super().__init__("-", ())

    def batch(self, size: int) -> None:
        """Nothing."""

    def handled(self, topic: str, outcome: str, seconds: float | None = None) -> None:
        """Nothing."""

    def emitted(self, ce_types: Iterable[str]) -> None:
        """Nothing."""

    def flush(self) -> None:
        """Nothing."""

    def dead_lettered(self, topic: str) -> None:
        """Nothing."""

    def retry_scheduled(self, topic: str) -> None:
        """Nothing."""

    def key_parked(self) -> None:
        """Nothing."""

    def stale_unit(self) -> None:
        """Nothing."""

    def key_released(self) -> None:
        """Nothing."""


def _observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe` of each amount, each bucket and the sum added to once.

    Observing takes two locks and a walk over the buckets per amount; a poll's handling times
    are added in one go through the child's buckets (prometheus-client's own fields, read
    with care: a client without them gets one observe per amount).
    """
    bounds: Sequence[float] | None = getattr(histogram, "_upper_bounds", None)
    buckets: Sequence[Any] | None = getattr(histogram, "_buckets", None)
    total: Any = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    for amount in amounts:
        # The first bucket whose bound is at least the amount, as observe picks it (the
        # last bound is +Inf); NaN, which observe drops from the buckets, counts nowhere.
        index = bisect.bisect_left(bounds, amount)
        if index < len(counts) and amount <= bounds[index]:
            counts[index] += 1
    total.inc(math.fsum(amounts))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def _result_of(error: BaseException) -> str:
    status = http_status_of(error)
    return type(error).__name__ if status is None else str(status)


class MeteredTransport(httpx.AsyncBaseTransport):
    """Wraps a partner client's transport: times each call and labels it with its result."""

    def __init__(self, partner: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._partner = partner
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the wrapped transport, timing it."""
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as error:
            PARTNER_CALLS.labels(self._partner, _result_of(error)).observe(
                time.perf_counter() - started
            )
            raise
        PARTNER_CALLS.labels(self._partner, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


def counted_send(
    send: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorates a notification provider's `send(self, request)`: counts by channel and result."""

    @functools.wraps(send)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        request: Any = args[1] if len(args) > 1 else kwargs.get("request")
        channel = str(getattr(request, "channel", "unknown"))
        try:
            result = await send(*args, **kwargs)
        except Exception as error:
            NOTIFICATIONS.labels(channel, _result_of(error)).inc()
            raise
        NOTIFICATIONS.labels(channel, "sent").inc()
        return result

    return wrapper


def observe_lag(group: str, topic: str, partition: int, lag: int) -> None:
    """Record one partition's lag."""
    LAG.labels(group, topic, str(partition)).set(max(0, lag))
