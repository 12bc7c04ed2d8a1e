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
from hub.core.topics import Subscription, apply_topics, courier_orders_topic, declare, replay_topic
from lab.bench.fixtures import produce_all, replayed_dead_letter, storefront_request
from lab.bench.worker import Variant, WorkerSpec
from lab.harness.kafka import LOG4J_CONFIG, LocalKafka, ensure_kafka_jars, require_tools

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from hub.core.topics import TopicSpec

log = structlog.get_logger(__name__)

ROTATION: tuple[str, ...] = ("raw", "faststream", "hub", "replay", "kafka-perf")
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
    count: int = 2000
    e2e_seconds: float = 60.0
    rate: float = 200.0
    perf_records: int = 100_000
    skip: frozenset[str] = frozenset()
    profile: frozenset[str] = frozenset()
    """Variants whose worker runs under py-spy (their RSS is then py-spy's, not theirs)."""
    log_dir: Path = Path(".hub/bench/logs")


@dataclass(frozen=True)
class Sample:
    """One measurement: what the worker reported, and the peak RSS of its process."""

    variant: str
    round: int
    result: dict[str, Any]
    peak_rss_mb: float
    processes: dict[str, float] = field(default_factory=dict)
    """Peak RSS (MiB) of the other processes of the measurement (the e2e services)."""


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

    async def prepare(self) -> int:
        """Create every topic, preload the inputs; returns the size of one request record."""
        settings = HubSettings()
        rounds = range(self.options.rounds)
        subscriptions = [Subscription(self.group("hub", r), (self.input_topic,)) for r in rounds]
        subscriptions += [
            Subscription(self.group("replay", r), (self.origin_topic,)) for r in rounds
        ]
        extra = [self.input_topic, self.output_topic, self.origin_topic, self.perf_topic]
        wanted: dict[str, TopicSpec] = {}
        for spec in [*declare(settings, subscriptions, extra), *all_topics(settings)]:
            wanted.setdefault(spec.name, spec)
        await apply_topics(self.bootstrap, wanted.values())
        count = self.options.count
        records = [storefront_request(i, topic=self.input_topic) for i in range(count)]
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
        first = records[0]
        return len(first.value or b"") + sum(len(k) + len(v) for k, v in first.headers)

    def throughput(self, variant: str, round_: int) -> Sample:
        """Measure one passthrough variant once."""
        env = dict(self.env)
        if variant in {"hub", "replay"}:
            env["HUB_STATE_DIR"] = str(self.workdir / "state" / f"{variant}-r{round_}")
        spec = WorkerSpec(
            variant=_variant(variant),
            bootstrap=self.bootstrap,
            group=self.group(variant, round_),
            input_topic=self.origin_topic if variant == "replay" else self.input_topic,
            output_topic=self.output_topic,
            count=self.options.count,
        )
        profile = None
        if variant in self.options.profile:
            profile = self.options.log_dir / f"{variant}-r{round_}.pyspy.txt"
        log_file = self.options.log_dir / f"{variant}-r{round_}.log"
        result, rss = _worker(spec, env, log_file, profile=profile)
        return Sample(variant, round_, result, round(rss, 1))

    def warm_up(self) -> None:
        """One raw pass, not counted: a fresh broker's JIT would otherwise tax round 1 alone."""
        spec = WorkerSpec(
            variant="raw",
            bootstrap=self.bootstrap,
            group=self.group("warmup", 0),
            input_topic=self.input_topic,
            output_topic=self.output_topic,
            count=min(self.options.count, WARMUP_RECORDS),
        )
        _worker(spec, self.env, self.options.log_dir / "warmup.log")

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

    def end_to_end(self) -> Sample:
        """Intake and dispatch as `hub run` processes; a load process offers cases, times them."""
        env = {**self.env, "HUB_STATE_DIR": str(self.workdir / "state" / "e2e")}
        hub = str(Path(sys.executable).with_name("hub"))
        services = {
            name: _spawn([hub, "run", name], env, self.options.log_dir / f"e2e-{name}.log")
            for name in ("intake", "dispatch")
        }
        try:
            spec = WorkerSpec(
                variant="e2e",
                bootstrap=self.bootstrap,
                rate=self.options.rate,
                duration_s=self.options.e2e_seconds,
                warmup=E2E_WARMUP,
                first_number=E2E_FIRST_NUMBER,
                result_topics=tuple(
                    courier_orders_topic(courier.code) for courier in load_partners().couriers
                ),
            )
            result, rss = _worker(spec, self.env, self.options.log_dir / "e2e-load.log")
        finally:
            # SIGTERM: each service drains in-flight records and exits, as in production.
            for process in services.values():
                process.send_signal(signal.SIGTERM)
            peaks = {name: round(_finish(process)[1], 1) for name, process in services.items()}
        return Sample("e2e", 0, result, round(rss, 1), processes=peaks)


def _variant(name: str) -> Variant:
    match name:
        case "raw" | "faststream" | "hub" | "replay" | "e2e":
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
            say(f"broker {bootstrap}; creating topics, preloading {options.count} requests ...")
            run.record_bytes = asyncio.run(bench.prepare())
            say("warming up (one raw pass, not counted) ...")
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
            if bench.measures("e2e"):
                say(
                    f"end-to-end: {options.rate:.0f} cases/s for {options.e2e_seconds:.0f} s "
                    "(intake and dispatch as `hub run` processes) ..."
                )
                run.samples.append(bench.end_to_end())
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
