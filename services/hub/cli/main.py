"""The `hub` command: run services, apply topics, manage the local broker, check schemas."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hub.bootstrap import all_topics
from hub.cli.dlq import dlq_app
from hub.cli.kafka import kafka_app
from hub.cli.schemas import schemas_app
from hub.cli.settings import settings_app
from hub.cli.stats import case_app, render_stats, stats_command
from hub.core.connection import kafka_security
from hub.core.logging import configure_logging
from hub.core.settings import HarnessSettings, HubSettings
from hub.core.topics import apply_topics

app = typer.Typer(help="After-sales repair integration hub.", no_args_is_help=True)
topics_app = typer.Typer(help="Topics declared as code.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schemas_app, name="schemas")
app.add_typer(settings_app, name="settings")
app.add_typer(topics_app, name="topics")
app.add_typer(case_app, name="case")
app.command("stats")(stats_command)
acls_app = typer.Typer(
    help="Kafka ACLs declared as code (a secured cluster).", no_args_is_help=True
)
app.add_typer(acls_app, name="acls")


def _settings() -> HubSettings:
    settings = HubSettings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@topics_app.command("apply")
def topics_apply() -> None:
    """Create missing topics and align their configs (safe to run again)."""
    settings = _settings()
    report = asyncio.run(
        apply_topics(
            settings.kafka_bootstrap_servers, all_topics(settings), kafka_security(settings)
        )
    )
    for name in report.created:
        print(f"created       {name}")
    for name in report.reconfigured:
        print(f"reconfigured  {name}")
    for name in report.repartitioned:
        print(f"repartitioned {name}")
    for warning in report.warnings:
        print(f"warning       {warning}")
    print(f"{len(report.unchanged)} topics unchanged")


@acls_app.command("apply")
def acls_apply(
    show: Annotated[bool, typer.Option("--show", help="Print every binding.")] = False,
) -> None:
    """Grant each service, partner and operations user exactly its rights (safe to run again).

    Runs as the user in HUB_KAFKA_USERNAME, which must be a super user of the cluster.
    """
    from hub.access import all_bindings  # noqa: PLC0415 - keeps `hub --help` fast
    from hub.core.acls import apply_acls  # noqa: PLC0415

    settings = _settings()
    bindings = all_bindings(settings)
    config = {"bootstrap_servers": settings.kafka_bootstrap_servers, **kafka_security(settings)}
    applied = asyncio.run(apply_acls(config, bindings))
    for binding in bindings if show else ():
        print(
            f"{binding.principal:28} {binding.operation.name:8} "
            f"{binding.resource_type.name.lower()} {binding.resource_name}"
        )
    print(f"{applied} ACL bindings in place")


@app.command("chaos")
def chaos(  # noqa: PLR0917 - typer options are parameters
    cases: Annotated[int, typer.Option(help="Cases to put through the whole flow.")] = 10_000,
    rate: Annotated[float, typer.Option(help="Storefront requests per second.")] = 50.0,
    kill_every: Annotated[float, typer.Option(help="Seconds between two SIGKILLs.")] = 15.0,
    broker_down: Annotated[float, typer.Option(help="Seconds broker node 2 stays down.")] = 15.0,
    failure_rate: Annotated[float, typer.Option(help="Share of partner calls that fail.")] = 0.3,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
    instances: Annotated[int, typer.Option(help="Processes per service group.")] = 1,
    postgres: Annotated[
        str | None,
        typer.Option(help="PostgreSQL server for --instances > 1 (the run makes its database)."),
    ] = None,
) -> None:
    """The fault suite: cases on a 3-node cluster while brokers, services and partners fail."""
    from hub.chaos import ChaosPlan, run_chaos  # noqa: PLC0415 - keeps `hub --help` fast

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    _settings()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = ChaosPlan(
        cases=cases,
        rate_per_s=rate,
        partner_failure_rate=failure_rate,
        kill_every_s=kill_every,
        broker_down_s=broker_down,
        timeout_s=timeout,
        instances=instances,
        postgres_server_url=postgres,
    )
    with tempfile.TemporaryDirectory(prefix="hub-chaos-") as workdir:
        report = asyncio.run(run_chaos(plan, Path(workdir), say=print))
    print()
    for line in report.lines():
        print(line)
    failed = report.lost or report.duplicate_pickups or report.duplicate_refunds
    told = report.undelivered_notifications or report.duplicate_notifications
    raise typer.Exit(1 if failed or told else 0)


@app.command("run")
def run(
    service: Annotated[
        str, typer.Argument(help="A declared consumer group; an unknown name lists them all.")
    ],
    webhook_port: Annotated[
        int, typer.Option(help="gateway-*: port of the partner webhook.")
    ] = 8080,
) -> None:
    """Run one service until SIGTERM or Ctrl-C (in-flight messages are drained first)."""
    from hub.bootstrap import declaration_of, runtime_for  # noqa: PLC0415 - keeps --help fast

    settings = _settings()
    try:
        runtime = runtime_for(
            declaration_of(service, settings), settings, webhook_port=webhook_port
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    asyncio.run(runtime.application().run())


@app.command("demo")
def demo() -> None:
    """Start a local broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and run cases to the center."""
    from hub.demo import run_demo  # noqa: PLC0415
    from hub.harness.kafka import LocalKafka  # noqa: PLC0415

    def say(line: str) -> None:
        print(line, flush=True)

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")  # the timelines are the demo's output
    # A fresh broker answers "coordinator not available" for a second; not worth showing here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if HarnessSettings().kafka_bootstrap_servers:
        result = asyncio.run(run_demo(_settings(), say=say))
    else:
        with tempfile.TemporaryDirectory(prefix="hub-demo-") as workdir:
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
