"""The `hub` command: run services, apply topics, manage the local broker, check schemas."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hub.bootstrap import all_topics
from hub.cli.console import console_app
from hub.cli.dlq import dlq_app
from hub.cli.schemas import schemas_app
from hub.cli.settings import settings_app
from hub.cli.stats import case_app, stats_command
from hub.core.connection import kafka_security
from hub.core.logging import configure_logging
from hub.core.settings import HubSettings
from hub.core.topics import apply_topics

app = typer.Typer(help="After-sales repair integration hub.", no_args_is_help=True)
topics_app = typer.Typer(help="Topics declared as code.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(console_app, name="console")
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
