"""`python -m lab`: the lab's commands (local broker, demo, fault suite); not in the product."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from hub.cli.main import _settings
from hub.cli.stats import render_scorecards, render_stats
from hub.core.settings import HarnessSettings
from lab.kafka_cli import kafka_app

if TYPE_CHECKING:
    from types import FrameType

app = typer.Typer(help="The hub's lab: a local broker, the demo, the fault suite.")
app.add_typer(kafka_app, name="kafka")


@app.command("chaos")
def chaos(  # noqa: PLR0917 - typer options are parameters
    cases: Annotated[int, typer.Option(help="Cases to put through the whole flow.")] = 10_000,
    rate: Annotated[float, typer.Option(help="Storefront requests per second.")] = 100.0,
    kill_every: Annotated[float, typer.Option(help="Seconds between two SIGKILLs.")] = 15.0,
    broker_down: Annotated[
        float, typer.Option(help="Seconds each stopped node stays down.")
    ] = 15.0,
    broker_stops: Annotated[int, typer.Option(help="Nodes stopped, one after the other.")] = 2,
    failure_rate: Annotated[float, typer.Option(help="Share of partner calls that fail.")] = 0.3,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
    instances: Annotated[int, typer.Option(help="Processes per service group.")] = 1,
    postgres: Annotated[
        str | None,
        typer.Option(help="PostgreSQL server for --instances > 1 (the run makes its database)."),
    ] = None,
) -> None:
    """The fault suite: cases on a 3-node cluster while brokers, services and partners fail."""
    from lab.chaos import ChaosPlan, run_chaos  # noqa: PLC0415 - keeps `hub --help` fast

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    _settings()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = ChaosPlan(
        cases=cases,
        rate_per_s=rate,
        partner_failure_rate=failure_rate,
        kill_every_s=kill_every,
        broker_down_s=broker_down,
        broker_stops=broker_stops,
        timeout_s=timeout,
        instances=instances,
        postgres_server_url=postgres,
    )
    with _work_dir("hub-chaos-") as workdir:
        report = asyncio.run(run_chaos(plan, Path(workdir), say=print))
        failed = (
            report.lost
            or report.duplicate_pickups
            or report.legs_with_two_couriers
            or report.duplicate_refunds
        )
        told = report.undelivered_notifications or report.duplicate_notifications
        kept = keep_logs(Path(workdir) / "logs", KEPT_LOGS / "chaos") if failed or told else None
    _print_report(report.lines(), kept)
    raise typer.Exit(1 if failed or told else 0)


@app.command("soak")
def soak(
    minutes: Annotated[float, typer.Option(help="How long to offer cases.")] = 30.0,
    rate: Annotated[float, typer.Option(help="Storefront requests per second.")] = 200.0,
    warm_up: Annotated[
        float, typer.Option(help="Minutes after which the peak RSS is the baseline.")
    ] = 5.0,
) -> None:
    """The soak: every service on one node at a steady rate; memory and lag over time."""
    from lab.soak import SoakPlan, run_soak  # noqa: PLC0415 - keeps `--help` fast

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    _settings()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = SoakPlan(minutes=minutes, rate_per_s=rate, warm_up_minutes=warm_up)
    with _work_dir("hub-soak-") as workdir:
        report = asyncio.run(run_soak(plan, Path(workdir), say=print))
        kept = None if report.passed else keep_logs(Path(workdir) / "logs", KEPT_LOGS / "soak")
    _print_report(report.lines(), kept)
    raise typer.Exit(0 if report.passed else 1)


@app.command("demo")
def demo() -> None:
    """Start a local broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and run cases to the center."""
    from lab.demo import run_demo  # noqa: PLC0415
    from lab.harness.kafka import LocalKafka  # noqa: PLC0415

    def say(line: str) -> None:
        print(line, flush=True)

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")  # the timelines are the demo's output
    # A fresh broker answers "coordinator not available" for a second; not worth showing here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if HarnessSettings().kafka_bootstrap_servers:
        result = asyncio.run(run_demo(_settings(), say=say))
    else:
        with _work_dir("hub-demo-") as workdir:
            say("starting a local Kafka broker (KRaft) ...")
            with LocalKafka(nodes=1, base_dir=Path(workdir) / "kafka") as kafka:
                say(f"broker ready at {kafka.bootstrap_servers}")
                os.environ["HUB_KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
                os.environ.setdefault("HUB_STATE_DIR", str(Path(workdir) / "state"))
                result = asyncio.run(run_demo(_settings(), say=say))
    print()
    for case_id, steps in result.timelines.items():
        print(f"case {case_id}")
        start = steps[0].at if steps else None
        for step in steps:
            offset = (step.at - start).total_seconds() if start else 0.0
            print(f"  +{offset:5.2f}s  {step.what:<24} {step.detail}")
        for message in result.messages.get(case_id, []):
            print(f"  customer got: {message}")
        print()
    if result.stats is not None:
        render_stats(result.stats, Console(), "tracker statistics over the demo cases")
    render_scorecards(result.scorecards, Console())


KEPT_LOGS = Path(".hub")
"""Where a failed chaos or soak run leaves its services' logs (its work directory goes)."""


def keep_logs(logs: Path, under: Path) -> Path | None:
    """Copy a run's `logs` to a new directory under `under`, named by the time; None if none."""
    if not logs.is_dir():
        return None
    kept = under / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    shutil.copytree(logs, kept)
    return kept


def _print_report(lines: list[str], kept: Path | None) -> None:
    print()
    for line in lines:
        print(line)
    if kept is not None:
        print(f"services' logs kept in {kept}")


def _work_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory removed when the run ends, by `kill` (SIGTERM) too (not SIGKILL).

    SIGTERM is taken as Ctrl-C is: the run stops its services, its brokers and its partners,
    and the directory (broker logs, up to a GiB) goes with them.
    """

    def interrupt(_signum: int, frame: FrameType | None) -> None:
        # Ctrl-C's own handler: inside asyncio.run it cancels the main task. A KeyboardInterrupt
        # raised here lands in whatever task runs, and one a partner simulator's task caught
        # (and logged) was lost: the run went on.
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, interrupt)
    return tempfile.TemporaryDirectory(prefix=prefix)
