"""The bench run: one broker, variants alternated round by round, then latency and references."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from dispatch.partners import load_partners
from hub.bootstrap import all_topics
from hub.core.settings import HubSettings
from hub.core.topics import (
    CASES,
    Subscription,
    apply_topics,
    courier_orders_topic,
    dead_letter_topic,
    declare,
    replay_topic,
)
from lab.bench.fixtures import dead_letter, produce_all, replayed_dead_letter, storefront_request
from lab.bench.worker import Variant, WorkerSpec
from lab.harness.kafka import LOG4J_CONFIG, LocalKafka, ensure_kafka_jars, require_tools

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from hub.core.topics import TopicSpec

log = structlog.get_logger(__name__)

ROTATION: tuple[str, ...] = (
    "raw-batch",
    "raw-single",
    "faststream-batch",
    "faststream-single",
    "hub",
    "replay",
    "dlq-replay",
    "kafka-perf",
)
"""One round measures each of these once, in this order."""
E2E_FIRST_NUMBER = 10_000_000  # request numbers of their own, apart from the preloaded ones
E2E_WARMUP = 50
WARMUP_RECORDS = 1000
PERF_CLASS = "org.apache.kafka.tools.ProducerPerformance"
PERF_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and for how long."""

    rounds: int = 3
    count: int = 5000
    e2e_seconds: float = 60.0
    rates: tuple[float, ...] = (200.0, 1000.0)
    """Cases per second offered end to end, one e2e measurement each."""
    deadline_ms: float = 1000.0
    """An e2e case is in time when its pickup order is out within this."""
    max_records: int = 500
    """The batch bound of raw-batch, faststream-batch and the hub (HUB_BATCH_MAX_RECORDS)."""
    dlq_letters: int = 20_000
    """Dead letters `hub dlq replay` sends in each round."""
    perf_records: int = 100_000
    skip: frozenset[str] = frozenset()
    profile: frozenset[str] = frozenset()
    """Variants whose worker runs under py-spy (their RSS is then py-spy's, not theirs)."""
    log_dir: Path = Path(".hub/bench/logs")
    ingress_rate: float = 1000.0
    """Requests per second offered to `hub run ingress` in its open-loop phase."""
    ingress_seconds: float = 20.0
    """How long each ingress phase (open loop, then closed loop) lasts."""
    ingress_connections: int = 64
    """Kept-alive HTTP connections of the ingress load (and closed-loop clients)."""


@dataclass(frozen=True)
class Sample:
    """One measurement: what the worker reported, and the peak RSS of its process."""

    variant: str
    round: int
    result: dict[str, Any]
    peak_rss_mb: float
    processes: dict[str, float] = field(default_factory=dict)
    """Peak RSS (MiB) of the other processes of the measurement (the e2e services)."""
    service: bool = False
    """Whether the measured process runs a service (the hub's runtime): the RSS target's."""


@dataclass
class BenchRun:
    """Everything measured in one run."""

    options: BenchOptions
    broker: str
    broker_started_here: bool
    samples: list[Sample] = field(default_factory=list)
    broker_peak_rss_mb: float | None = None
    record_bytes: int = 0
    started_at: float = field(default_factory=time.time)


# --- processes ---------------------------------------------------------------------------------
def _finish(process: subprocess.Popen[str]) -> tuple[str, float]:
    """Wait for `process`; its stdout, and its peak RSS in MiB (from wait4, so its own)."""
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return output, usage.ru_maxrss / 1024  # Linux reports KiB


def _spawn(command: Sequence[str], env: dict[str, str], log_file: Path) -> subprocess.Popen[str]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as stderr:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and java command lines
            list(command), env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )


def _worker(
    spec: WorkerSpec, env: dict[str, str], log_file: Path, *, profile: Path | None = None
) -> tuple[dict[str, Any], float]:
    command = [sys.executable, "-m", "lab.bench.worker", spec.model_dump_json()]
    if profile is not None:
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            raise RuntimeError(
                "--profile needs py-spy: "
                ".venv/bin/pip install -c constraints.txt -e '.[test,bench]'"
            )
        # CPU samples only: waiting shows up as the gaps, measured by the hub's own duration_ms.
        command = [str(py_spy), "record", "--threads", "--rate", "250",
                   "--format", "raw", "-o", str(profile), "--", *command]  # fmt: skip
    process = _spawn(command, env, log_file)
    output, rss = _finish(process)
    # The result is the last JSON line; py-spy, when it wraps the worker, writes after it.
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"bench worker {spec.variant} failed ({process.returncode}): {log_file}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result, rss


def _peak_rss_of(pid: int) -> float | None:
    """VmHWM of a running process we did not spawn directly (the broker's JVM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@contextlib.contextmanager
def kafka(workdir: Path) -> Iterator[tuple[str, int | None]]:
    """KAFKA_BOOTSTRAP_SERVERS if set; otherwise a LocalKafka broker of our own (and its pid)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, None
        return
    with LocalKafka(nodes=1, base_dir=workdir / "kafka") as broker:
        yield broker.bootstrap_servers, broker.specs[0].pid


# --- the run -----------------------------------------------------------------------------------
class Bench:
    """Sets up topics and input once, then measures round by round on one broker."""

    def __init__(
        self, options: BenchOptions, bootstrap: str, workdir: Path, say: Callable[[str], None]
    ) -> None:
        self.options = options
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.say = say
        self.run_id = uuid.uuid4().hex[:6]  # fresh groups and topics even on a reused broker
        self.input_topic = f"bench.{self.run_id}.requests"
        self.output_topic = f"bench.{self.run_id}.out"
        self.origin_topic = f"bench.{self.run_id}.replay-origin"
        self.perf_topic = f"bench.{self.run_id}.perf"
        # One dead-letter topic for every round: each round's replay run sends all of it again.
        self.dlq_group = f"bench-dlqreplay-{self.run_id}"
        self.env = {
            **os.environ,
            "HUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HUB_LOG_LEVEL": os.environ.get("HUB_LOG_LEVEL", "INFO"),
            "HUB_LOG_FORMAT": "json",
        }

    def group(self, variant: str, round_: int) -> str:
        """The consumer group of one variant in one round: new offsets, new inbox."""
        return f"bench-{variant}-{self.run_id}-r{round_}"

    def measures(self, variant: str) -> bool:
        """Whether `variant` is measured in this run."""
        return variant not in self.options.skip

    def passthrough(self) -> bool:
        """Whether a round-robin variant is measured (they need the preloaded input)."""
        return any(self.measures(variant) for variant in ROTATION)

    async def prepare(self) -> int:
        """Create every topic, preload the inputs; returns the size of one request record."""
        settings = HubSettings()
        rounds = range(self.options.rounds)
        subscriptions = [Subscription(self.group("hub", r), (self.input_topic,)) for r in rounds]
        subscriptions += [
            Subscription(self.group("replay", r), (self.origin_topic,)) for r in rounds
        ]
        subscriptions.append(Subscription(self.dlq_group, (self.origin_topic,)))
        extra = [self.input_topic, self.output_topic, self.origin_topic, self.perf_topic]
        wanted: dict[str, TopicSpec] = {}
        for spec in [*declare(settings, subscriptions, extra), *all_topics(settings)]:
            wanted.setdefault(spec.name, spec)
        await apply_topics(self.bootstrap, wanted.values())
        count = self.options.count
        records = [storefront_request(i, topic=self.input_topic) for i in range(count)]
        if self.passthrough():
            await produce_all(self.bootstrap, records)
        if self.measures("replay"):
            for r in rounds:
                group = self.group("replay", r)
                await produce_all(
                    self.bootstrap,
                    (
                        replayed_dead_letter(
                            i,
                            origin_topic=self.origin_topic,
                            group=group,
                            replay_topic=replay_topic(group),
                        )
                        for i in range(count)
                    ),
                )
        if self.measures("dlq-replay"):
            dlq = dead_letter_topic(self.origin_topic, self.dlq_group)
            await produce_all(
                self.bootstrap,
                (
                    dead_letter(i, origin_topic=self.origin_topic, group=self.dlq_group, topic=dlq)
                    for i in range(self.options.dlq_letters)
                ),
            )
        first = records[0]
        return len(first.value or b"") + sum(len(k) + len(v) for k, v in first.headers)

    def throughput(self, variant: str, round_: int) -> Sample:
        """Measure one passthrough variant once."""
        env = dict(self.env)
        if variant in {"hub", "replay", "dlq-replay"}:
            env["HUB_STATE_DIR"] = str(self.workdir / "state" / f"{variant}-r{round_}")
        if variant in {"hub", "replay"}:
            # The kernel's batch bound, the same as the batch variants'.
            env["HUB_BATCH_MAX_RECORDS"] = str(self.options.max_records)
        dlq = variant == "dlq-replay"
        spec = WorkerSpec(
            variant=_variant(variant),
            bootstrap=self.bootstrap,
            group=self.dlq_group if dlq else self.group(variant, round_),
            input_topic=self.origin_topic if variant == "replay" else self.input_topic,
            output_topic=self.output_topic,
            count=self.options.dlq_letters if dlq else self.options.count,
            max_records=self.options.max_records,
        )
        profile = None
        if variant in self.options.profile:
            profile = self.options.log_dir / f"{variant}-r{round_}.pyspy.txt"
        log_file = self.options.log_dir / f"{variant}-r{round_}.log"
        result, rss = _worker(spec, env, log_file, profile=profile)
        return Sample(variant, round_, result, round(rss, 1), service=variant in {"hub", "replay"})

    def warm_up(self) -> None:
        """Raw passes, not counted: a fresh broker's JIT would otherwise tax round 1 alone.

        A batch pass over every record (the batch variants' fetch and produce paths), then a
        one-at-a-time pass over a few.
        """
        for variant, count in (
            ("raw-batch", self.options.count),
            ("raw-single", min(self.options.count, WARMUP_RECORDS)),
        ):
            spec = WorkerSpec(
                variant=_variant(variant),
                bootstrap=self.bootstrap,
                group=self.group(f"warmup{variant}", 0),
                input_topic=self.input_topic,
                output_topic=self.output_topic,
                count=count,
                max_records=self.options.max_records,
            )
            _worker(spec, self.env, self.options.log_dir / f"warmup-{variant}.log")

    def producer_performance(self, round_: int, record_bytes: int) -> Sample:
        """Kafka's own ProducerPerformance (acks=all, otherwise its defaults) on this broker."""
        java = require_tools("java")["java"]
        command = [
            java, "-Xmx512m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", f"{ensure_kafka_jars()}/*", PERF_CLASS,
            "--topic", self.perf_topic, "--num-records", str(self.options.perf_records),
            "--record-size", str(record_bytes), "--throughput", "-1",
            "--producer-props", f"bootstrap.servers={self.bootstrap}", "acks=all",
        ]  # fmt: skip
        process = _spawn(command, self.env, self.options.log_dir / f"kafka-perf-r{round_}.log")
        output, rss = _finish(process)
        found = [match for line in output.splitlines() if (match := PERF_SUMMARY.search(line))]
        if process.returncode != 0 or not found:
            raise RuntimeError(
                f"ProducerPerformance failed ({process.returncode}): {output[-500:]}"
            )
        summary = found[-1]
        result = {
            "variant": "kafka-perf",
            "messages": int(summary["records"]),
            "rate": float(summary["rate"]),
            "mb_per_s": float(summary["mb"]),
            "avg_ms": float(summary["avg"]),
            "p50_ms": float(summary["p50"]),
            "p95_ms": float(summary["p95"]),
            "p99_ms": float(summary["p99"]),
            "record_bytes": record_bytes,
        }
        return Sample("kafka-perf", round_, result, round(rss, 1))

    def end_to_end(self, index: int, rate: float) -> Sample:
        """Intake and dispatch as `hub run` processes; a load process offers cases, times them.

        Fresh processes for each rate, so each rate's peak RSS is its own, on the state the
        earlier rates left (as a restart would): their groups' offsets and durable timers are on
        the broker, so a fresh store would meet timers for shipments it never saw. What an
        earlier rate left unfinished, and its timers falling due, is part of the later rate's
        load. Request numbers of their own per rate: no case is an inbox duplicate.
        """
        tag = f"{rate:g}"
        env = {**self.env, "HUB_STATE_DIR": str(self.workdir / "state" / "e2e")}
        hub = str(Path(sys.executable).with_name("hub"))
        services = {
            name: _spawn([hub, "run", name], env, self.options.log_dir / f"e2e-{tag}-{name}.log")
            for name in ("intake", "dispatch")
        }
        try:
            spec = WorkerSpec(
                variant="e2e",
                bootstrap=self.bootstrap,
                rate=rate,
                duration_s=self.options.e2e_seconds,
                warmup=E2E_WARMUP,
                first_number=E2E_FIRST_NUMBER * (index + 1),
                deadline_ms=self.options.deadline_ms,
                result_topics=tuple(
                    courier_orders_topic(courier.code) for courier in load_partners().couriers
                ),
                via_topic=CASES,
            )
            result, rss = _worker(spec, self.env, self.options.log_dir / f"e2e-{tag}-load.log")
        finally:
            # SIGTERM: each service drains in-flight records and exits, as in production.
            for process in services.values():
                process.send_signal(signal.SIGTERM)
            peaks = {name: round(_finish(process)[1], 1) for name, process in services.items()}
        return Sample("e2e", index, result, round(rss, 1), processes=peaks)

    def ingress(self) -> Sample:
        """`hub run ingress` as deployed, HTTP load from this process (lab.bench.ingress)."""
        from lab.bench.ingress import IngressOptions, measure  # noqa: PLC0415 - HTTP client

        options = IngressOptions(
            rate=self.options.ingress_rate,
            seconds=self.options.ingress_seconds,
            connections=self.options.ingress_connections,
            log_level=self.env["HUB_LOG_LEVEL"],
        )
        result = measure(
            self.bootstrap, options, self.workdir / "state", self.options.log_dir / "ingress.log"
        )
        return Sample("ingress", 0, result, result["ingress_peak_rss_mb"], service=True)


def _variant(name: str) -> Variant:
    match name:
        case (
            "raw-batch"
            | "raw-single"
            | "faststream-batch"
            | "faststream-single"
            | "hub"
            | "replay"
            | "dlq-replay"
            | "e2e"
        ):
            return name
    raise ValueError(f"not a worker variant: {name}")


def run_bench(options: BenchOptions, say: Callable[[str], None]) -> BenchRun:
    """Start or reuse a broker, measure every variant, and return the figures."""
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as temp:
        workdir = Path(temp)
        say("starting or reusing a Kafka broker ...")
        with kafka(workdir) as (bootstrap, broker_pid):
            run = BenchRun(options, bootstrap, broker_started_here=broker_pid is not None)
            bench = Bench(options, bootstrap, workdir, say)
            os.environ["HUB_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            preload = f", preloading {options.count} requests" if bench.passthrough() else ""
            say(f"broker {bootstrap}; creating topics{preload} ...")
            run.record_bytes = asyncio.run(bench.prepare())
            if bench.passthrough():
                say("warming up (raw passes, not counted) ...")
                bench.warm_up()
            for round_ in range(options.rounds):
                for variant in ROTATION:
                    if not bench.measures(variant):
                        continue
                    if variant == "kafka-perf":
                        sample = bench.producer_performance(round_, run.record_bytes)
                    else:
                        sample = bench.throughput(variant, round_)
                    run.samples.append(sample)
                    log.info("bench_measured", round=round_, result=sample.result)
                    say(
                        f"round {round_ + 1}/{options.rounds} {variant:<11} "
                        f"{sample.result['rate']:>9,.0f} msg/s  rss {sample.peak_rss_mb:.0f} MiB"
                    )
            for index, rate in enumerate(options.rates if bench.measures("e2e") else ()):
                say(
                    f"end-to-end: {rate:.0f} cases/s for {options.e2e_seconds:.0f} s "
                    "(intake and dispatch as `hub run` processes) ..."
                )
                sample = bench.end_to_end(index, rate)
                run.samples.append(sample)
                log.info("bench_measured", result=sample.result)
                say(
                    f"end-to-end @ {rate:.0f}/s: {sample.result['received']}/"
                    f"{sample.result['sent']} arrived, {sample.result['in_time']} in time, "
                    f"p99 {sample.result['p99_ms']:,.0f} ms"
                )
            if bench.measures("ingress"):
                say(
                    f"ingress: {options.ingress_rate:.0f} requests/s offered, then "
                    f"{options.ingress_connections} clients back to back, "
                    f"{options.ingress_seconds:.0f} s each (`hub run ingress`) ..."
                )
                sample = bench.ingress()
                run.samples.append(sample)
                log.info("bench_measured", result=sample.result)
                say(
                    f"ingress: {sample.result['closed']['rate']:,.0f} requests/s closed loop; "
                    f"p99 {sample.result['open']['p99_ms']:,.1f} ms at "
                    f"{options.ingress_rate:.0f}/s offered"
                )
            if broker_pid is not None:
                run.broker_peak_rss_mb = _peak_rss_of(broker_pid)
    return run


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }
