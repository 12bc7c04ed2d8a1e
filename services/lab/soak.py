"""The soak: the whole hub at a steady rate for a long time, watching memory and lag.

Every service runs as its own `hub run` process on one broker node, with the partner
simulators answering; nothing fails on purpose. What a long run shows that a short one cannot:
memory that keeps growing, and a hub that falls behind a little more each minute.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from hub.bootstrap import Adapter, all_topics, declarations
from hub.core.settings import HubSettings
from hub.core.topics import apply_topics
from lab.chaos import (
    RETRY_TIERS,
    Partners,
    Services,
    offer_requests,
    service_environment,
    watch_lag,
    work_topics,
)
from lab.harness.kafka import LocalKafka, free_port

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger(__name__)

SAMPLE_EVERY_S = 10.0
RSS_GROWTH_LIMIT = 0.10
"""Peak RSS at the end may exceed the peak after the warm-up by at most this share."""
CAUGHT_UP_LIMIT_S = 10.0
"""After the load stops, the lag must be back to zero within this many seconds."""
GATEWAYS = frozenset({Adapter.COURIER_API, Adapter.CENTER_API})


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """How long, how fast, and when the warm-up ends."""

    minutes: float = 30.0
    rate_per_s: float = 200.0
    warm_up_minutes: float = 5.0
    drain_timeout_s: float = 300.0
    """How long to wait for the lag to reach zero after the load stops, before giving up."""


@dataclass
class SoakReport:
    """Peak RSS per process after the warm-up and at the end, and how the lag ended."""

    plan: SoakPlan
    cases: int = 0
    offered_seconds: float = 0.0
    peak_rss_after_warm_up_mib: dict[str, float] = field(default_factory=dict)
    peak_rss_at_end_mib: dict[str, float] = field(default_factory=dict)
    lag: list[tuple[float, int]] = field(default_factory=list)
    load_stopped_at: float = 0.0
    behind_when_load_stopped: dict[str, int] = field(default_factory=dict)
    """Records each group still had to read when the offering ended."""
    behind_at_end: dict[str, int] = field(default_factory=dict)
    """The same at the last reading: the groups that never caught up."""
    restarts: dict[str, int] = field(default_factory=dict)
    """Processes that died on their own during the run (there should be none)."""

    @property
    def max_lag(self) -> int:
        """The most records the groups were behind at one reading, during the load."""
        return max((lag for at, lag in self.lag if at <= self.load_stopped_at), default=0)

    @property
    def caught_up_after_s(self) -> float | None:
        """Seconds from the end of the load to the first reading of zero lag (None: never)."""
        return next(
            (at - self.load_stopped_at for at, lag in self.lag
             if at >= self.load_stopped_at and lag == 0),
            None,
        )  # fmt: skip

    def growth(self, name: str) -> float:
        """How much the process's peak RSS grew after the warm-up, as a share."""
        first = self.peak_rss_after_warm_up_mib.get(name, 0.0)
        return self.peak_rss_at_end_mib.get(name, 0.0) / first - 1 if first else float("inf")

    @property
    def passed(self) -> bool:
        """Memory flat after the warm-up, the lag back to zero in time, nothing died."""
        flat = all(
            end <= self.peak_rss_after_warm_up_mib.get(name, 0.0) * (1 + RSS_GROWTH_LIMIT)
            for name, end in self.peak_rss_at_end_mib.items()
        )
        caught_up = self.caught_up_after_s
        return (
            flat
            and caught_up is not None
            and caught_up <= CAUGHT_UP_LIMIT_S
            and not any(self.restarts.values())
        )

    def lines(self) -> list[str]:
        """The report as text, one figure a line, then one line per process."""
        caught_up = self.caught_up_after_s
        achieved = self.cases / max(self.offered_seconds, 1e-9)
        caught_up_text = "never" if caught_up is None else f"{caught_up:.1f}s"
        plan = self.plan
        return [
            (
                f"soak                  {plan.minutes:g} min at {plan.rate_per_s:g} cases/s on one"
                f" node (warm-up {plan.warm_up_minutes:g} min)"
            ),
            (
                f"cases offered         {self.cases} in {self.offered_seconds:.0f}s"
                f" ({achieved:.0f} cases/s achieved)"
            ),
            f"max consumer lag      {self.max_lag} records (inputs of every group, each second)",
            (
                f"lag back to zero      {caught_up_text} after the load stopped"
                f" (limit {CAUGHT_UP_LIMIT_S:g}s)"
            ),
            f"behind at load stop   {self.behind_when_load_stopped}",
            *([f"behind at end         {self.behind_at_end}"] if self.behind_at_end else []),
            f"processes died        {sum(self.restarts.values())}",
            f"{'process':<22}{'peak RSS MiB at warm-up':>24}{'at end':>10}{'growth':>9}",
            *(
                f"{name:<22}{self.peak_rss_after_warm_up_mib.get(name, 0.0):>24.1f}"
                f"{self.peak_rss_at_end_mib[name]:>10.1f}{self.growth(name):>+9.1%}"
                for name in sorted(self.peak_rss_at_end_mib)
            ),
            (
                f"verdict               {'PASS' if self.passed else 'FAIL'} (peak RSS growth at"
                f" most {RSS_GROWTH_LIMIT:.0%} per process)"
            ),
        ]


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peaks(services: Services) -> dict[str, float]:
    return {
        name: peak_rss_mib(process.pid)
        for name, process in services.processes.items()
        if process.poll() is None
    }


async def _watch_processes(
    services: Services, report: SoakReport, warm_up_ends: float, stop: asyncio.Event
) -> None:
    """Take the peaks once the warm-up ends; restart (and count) a process that died."""
    while not stop.is_set():
        if not report.peak_rss_after_warm_up_mib and time.monotonic() >= warm_up_ends:
            report.peak_rss_after_warm_up_mib = _peaks(services)
        for name, process in list(services.processes.items()):
            if process.poll() is not None:
                report.restarts[name] = report.restarts.get(name, 0) + 1
                log.warning("soak_process_died", process=name, code=process.returncode)
                services.start(name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=SAMPLE_EVERY_S)
        except TimeoutError:
            continue


async def run_soak(plan: SoakPlan, base_dir: Path, say: Callable[[str], None]) -> SoakReport:
    """Run the plan on a fresh single-node broker under `base_dir`."""
    report = SoakReport(plan=plan, cases=int(plan.minutes * 60 * plan.rate_per_s))
    kafka = LocalKafka(nodes=1, base_dir=base_dir / "kafka")
    await asyncio.to_thread(kafka.start)
    try:
        say(f"broker at {kafka.bootstrap_servers}")
        settings = HubSettings(
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            retry_tiers=RETRY_TIERS,
            state_dir=str(base_dir / "state"),
        )
        await apply_topics(settings.kafka_bootstrap_servers, all_topics(settings))
        declared = declarations(settings)
        ports = {d.group: free_port() for d in declared if d.adapter in GATEWAYS}
        partners = Partners(kafka.bootstrap_servers, 0.0, seed=11, ports=ports)
        for partner in partners.all:
            await partner.start()
        log_dir = base_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        environment = service_environment(partners, kafka.bootstrap_servers, base_dir / "state")
        services = Services(environment, log_dir, declared, ports, instances=1)
        services.start_all()
        stop_watching, stop_processes = asyncio.Event(), asyncio.Event()
        behind: dict[str, int] = {}
        watching = asyncio.create_task(
            watch_lag(settings, work_topics(declared), report.lag, stop_watching, behind)
        )
        warm_up_ends = time.monotonic() + plan.warm_up_minutes * 60
        processes = asyncio.create_task(
            _watch_processes(services, report, warm_up_ends, stop_processes)
        )
        try:
            say(f"offering {report.cases} cases at {plan.rate_per_s:g}/s")
            report.offered_seconds = await offer_requests(
                settings, report.cases, plan.rate_per_s, lambda _case: None
            )
            report.load_stopped_at = time.monotonic()
            report.peak_rss_at_end_mib = _peaks(services)
            report.behind_when_load_stopped = dict(sorted(behind.items()))
            say("load stopped; waiting for the lag to reach zero")
            drain_ends = report.load_stopped_at + plan.drain_timeout_s
            while time.monotonic() < drain_ends and report.caught_up_after_s is None:  # noqa: ASYNC110
                await asyncio.sleep(1.0)
            report.behind_at_end = dict(sorted(behind.items()))
        finally:
            stop_processes.set()
            stop_watching.set()
            await processes
            await watching
            await asyncio.to_thread(services.stop_all)
            for partner in reversed(partners.all):
                await partner.stop()
    finally:
        await asyncio.to_thread(kafka.stop)
    log.info("soak_finished", passed=report.passed, max_lag=report.max_lag)
    return report
