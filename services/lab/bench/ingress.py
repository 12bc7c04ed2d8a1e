"""The HTTP front door under load: `hub run ingress` on one broker, an HTTP client offering events.

`python -m lab.bench.ingress [--rate 1000] [--seconds 20] [--connections 64]` against
KAFKA_BOOTSTRAP_SERVERS (or a local broker of its own). `hub run ingress` runs as deployed, in a
process of its own on a fresh state store; this process offers binary-mode storefront requests
over kept-alive HTTP/1.1 connections (a lean client of its own), each a new id, in two phases:

- `open`: `--rate` requests a second for `--seconds`, each timed from its *scheduled* send time
  to its 202 (a slow answer delays no later request: no coordinated omission);
- `closed`: `--connections` clients back to back for `--seconds`: the most it answers a second.

Every answer must be 202, i.e. on the broker with acks=all. `make bench` runs it as its ingress
row; the last line printed is the result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hub.bootstrap import all_topics
from hub.core.logging import configure_logging
from hub.core.loop import run_on_uvloop
from hub.core.settings import HarnessSettings, HubSettings
from hub.core.topics import apply_topics
from ingress.auth import token_digest
from lab.samples import sample_request

TOKEN = "bench-token"  # noqa: S105 - the bench's own throwaway backend
SOURCE = "urn:storefront:bench"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
RETRIES = 2
FIRST_NUMBER = 50_000_000  # request numbers of their own, apart from the other rows'
P99_TARGET_MS = 50.0
RATE_TARGET = 1000.0


@dataclass(frozen=True)
class IngressOptions:
    """What to offer, for how long."""

    rate: float = RATE_TARGET
    seconds: float = 20.0
    connections: int = 64
    processes: int = 1
    """`hub run ingress` processes on the one port (SO_REUSEPORT), as replicas would be."""
    warmup: int = 500
    log_level: str = "INFO"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (sorted here)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


class Connections:
    """Kept-alive HTTP/1.1 connections to the front door, at most `limit`, one request each.

    As lean a client as wrk's: on two cores, what the load generator spends the server lacks.
    """

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(limit)

    async def post(self, request: bytes) -> int:
        """Send one whole request; the answer's status once its body is read."""
        async with self._slots:
            reader, writer = self._idle.pop() if self._idle else await self._open()
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
                length = _content_length(head)
                await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            self._idle.append((reader, writer))
            return int(head[9:12])

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self._host, self._port), 10)

    def close(self) -> None:
        """Close the idle connections."""
        for _, writer in self._idle:
            writer.close()


def _content_length(head: bytes) -> int:
    marker = head.lower().find(b"\r\ncontent-length:")
    if marker < 0:
        return 0
    return int(head[marker + 17 : head.index(b"\r\n", marker + 2)])


class Load:
    """Distinct storefront requests, each with an id of its own, and the connections they take."""

    def __init__(self, host: str, port: int, connections: Connections, first: int) -> None:
        self._host = f"{host}:{port}"
        self._connections = connections
        self._next = first
        # One rendered request; each send puts its own request id in (cheap for the client).
        self._template = sample_request(0).to_bytes()
        self._placeholder = sample_request(0).request_id.encode()
        self.refused: dict[int, int] = {}
        self.sent = 0
        self.resent = 0

    def _request(self, number: int) -> bytes:
        body = self._template.replace(self._placeholder, f"RQ-{number:08d}".encode())
        head = (
            f"POST /events HTTP/1.1\r\nhost: {self._host}\r\n"
            f"authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n"
            f"ce-specversion: 1.0\r\nce-id: bench-{number}\r\nce-source: {SOURCE}\r\n"
            "ce-type: storefront.aftersales.requested.v3\r\n"
            "ce-time: 2026-12-01T08:00:00+00:00\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self) -> None:
        """One request, new id and request number; a non-202 is counted by status."""
        number = self._next
        self._next += 1
        self.sent += 1
        request = self._request(number)
        for attempt in range(RETRIES + 1):
            try:
                status = await self._connections.post(request)
            except (OSError, asyncio.IncompleteReadError):
                # A kept-alive connection closed under us: send again, same ce-id, as a
                # backend does (the front door writes it once either way).
                if attempt == RETRIES:
                    raise
                self.resent += 1
            else:
                if status != 202:  # noqa: PLR2004 - the one success status
                    self.refused[status] = self.refused.get(status, 0) + 1
                return


async def open_loop(load: Load, rate: float, seconds: float) -> dict[str, Any]:
    """`rate` a second for `seconds`; latency from each request's scheduled time."""
    total = int(rate * seconds)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(scheduled: float) -> None:
        await load.send()
        latencies.append((loop.time() - scheduled) * 1000)

    tasks: list[asyncio.Task[None]] = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    return {
        "offered_rate": rate,
        "sent": total,
        "achieved_rate": round(total / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p95_ms": round(_percentile(latencies, 0.95), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def closed_loop(load: Load, connections: int, seconds: float) -> dict[str, Any]:
    """`connections` clients back to back for `seconds`: requests answered a second."""
    loop = asyncio.get_running_loop()
    done = 0
    latencies: list[float] = []
    end = loop.time() + seconds

    async def client() -> None:
        nonlocal done
        while loop.time() < end:
            started = loop.time()
            await load.send()
            latencies.append((loop.time() - started) * 1000)
            done += 1

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {
        "connections": connections,
        "answered": done,
        "rate": round(done / (loop.time() - started), 1),
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
    }


async def _ready(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"hub run ingress exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/readyz") as answer:
                    if answer.status == 200:  # noqa: PLR2004 - ready
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("hub run ingress was not ready in time")


async def _drive(host: str, port: int, options: IngressOptions, pids: list[int]) -> dict[str, Any]:
    connections = Connections(host, port, options.connections)
    try:
        load = Load(host, port, connections, FIRST_NUMBER + int(time.time()) % 1000 * 100_000)
        for _ in range(options.warmup // options.connections + 1):
            await asyncio.gather(*(load.send() for _ in range(options.connections)))
        counted, own_cpu = load.sent, time.process_time()
        cpu = sum(_cpu_seconds(pid) for pid in pids)
        opened = await open_loop(load, options.rate, options.seconds)
        closed = await closed_loop(load, options.connections, options.seconds)
        measured = load.sent - counted
        return {
            "open": opened,
            "closed": closed,
            "refused": load.refused,
            "resent": load.resent,
            "requests": load.sent,
            # CPU of the ingress processes per request of both phases: what one core can carry,
            # far less sensitive than the rates to what else the machine runs.
            "ingress_cpu_us_per_request": round(
                (sum(_cpu_seconds(pid) for pid in pids) - cpu) / measured * 1e6, 1
            ),
            # The load's own cost: on two cores the client competes with the server it measures.
            "client_cpu_us_per_request": round((time.process_time() - own_cpu) / measured * 1e6, 1),
        }
    finally:
        connections.close()


def measure(
    bootstrap: str, options: IngressOptions, workdir: Path, log_file: Path
) -> dict[str, Any]:
    """Start `hub run ingress`, offer the load, stop it; the figures and its peak RSS."""
    port = _free_port()
    backends = {"bench": {"token_sha256": token_digest(TOKEN), "sources": [SOURCE]}}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "KAFKA_"))},
        "HUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HUB_STATE_DIR": str(workdir / f"ingress-{uuid.uuid4().hex[:6]}"),
        "HUB_INGRESS_HOST": "127.0.0.1",
        "HUB_INGRESS_PORT": str(port),
        "HUB_INGRESS_BACKENDS": json.dumps(backends),
        "HUB_LOG_LEVEL": options.log_level,
        "HUB_LOG_FORMAT": "json",
    }
    hub = str(Path(sys.executable).with_name("hub"))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as output:
        processes = [
            subprocess.Popen(  # noqa: S603 - our own CLI
                [hub, "run", "ingress"], env=environment, stdout=output, stderr=subprocess.STDOUT
            )
            for _ in range(options.processes)
        ]
    url = f"http://127.0.0.1:{port}"
    peaks: list[float] = []
    try:
        asyncio.run(_ready(url, processes))
        # The client on uvloop too: on two cores its CPU is taken from the server it measures.
        pids = [process.pid for process in processes]
        result = run_on_uvloop(_drive("127.0.0.1", port, options, pids))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            peaks.append(round(usage.ru_maxrss / 1024, 1))
    return {
        "variant": "ingress",
        "options": asdict(options),
        **result,
        "ingress_peak_rss_mb": max(peaks),
        "ingress_exit": max(process.returncode for process in processes),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The figures as the bench prints them, with the targets."""
    opened, closed = result["open"], result["closed"]
    met_rate = closed["rate"] >= RATE_TARGET
    met_p99 = opened["p99_ms"] <= P99_TARGET_MS
    return [
        (
            f"ingress @ {opened['offered_rate']:,.0f}/s offered: {opened['achieved_rate']:,.0f}/s, "
            f"p50 {opened['p50_ms']:.1f} / p95 {opened['p95_ms']:.1f} / p99 "
            f"{opened['p99_ms']:.1f} / max {opened['max_ms']:.1f} ms"
        ),
        (
            f"ingress ({result['options']['processes']} processes) closed loop, "
            f"{closed['connections']} connections: {closed['rate']:,.0f} "
            f"requests/s (p50 {closed['p50_ms']:.1f} / p99 {closed['p99_ms']:.1f} ms)"
        ),
        (
            f"refused: {result['refused'] or 'none'}, sent again: {result['resent']}; ingress CPU "
            f"{result['ingress_cpu_us_per_request']:.0f} us a request (the client "
            f"{result['client_cpu_us_per_request']:.0f} us), peak RSS "
            f"{result['ingress_peak_rss_mb']:.0f} MiB"
        ),
        (
            f"target requests/s >= {RATE_TARGET:,.0f}: {'met' if met_rate else 'MISSED'}; "
            f"target p99 <= {P99_TARGET_MS:.0f} ms at {opened['offered_rate']:,.0f}/s: "
            f"{'met' if met_p99 else 'MISSED'}"
        ),
    ]


def main() -> None:
    """Entry point: a broker (the caller's or our own), the topics, the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=RATE_TARGET)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--processes", type=int, default=1, help="hub run ingress processes on the one port."
    )
    parser.add_argument("--log-level", default="INFO", help="HUB_LOG_LEVEL of the ingress.")
    parser.add_argument("--log-dir", type=Path, default=Path(".hub/bench/logs"))
    arguments = parser.parse_args()
    options = IngressOptions(
        rate=arguments.rate,
        seconds=arguments.seconds,
        connections=arguments.connections,
        processes=arguments.processes,
        log_level=arguments.log_level,
    )
    configure_logging("WARNING", "json")
    with tempfile.TemporaryDirectory(prefix="hub-ingress-bench-") as temp:
        workdir = Path(temp)
        with contextlib.ExitStack() as broker:
            bootstrap = HarnessSettings().kafka_bootstrap_servers
            if not bootstrap:
                from lab.harness.kafka import LocalKafka  # noqa: PLC0415 - only without a cluster

                kafka = broker.enter_context(LocalKafka(nodes=1, base_dir=workdir / "kafka"))
                bootstrap = kafka.bootstrap_servers
            settings = HubSettings(kafka_bootstrap_servers=bootstrap)
            asyncio.run(apply_topics(bootstrap, all_topics(settings)))
            result = measure(bootstrap, options, workdir, arguments.log_dir / "ingress.log")
    sys.stdout.write("\n".join(summary_lines(result)) + "\n")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
