"""The `hub` command: run services, apply topics, manage the local broker, check schemas."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from hub.bootstrap import all_topics
from hub.cli.asyncapi import asyncapi_app
from hub.cli.console import console_app
from hub.cli.deploy import deploy_app
from hub.cli.dlq import dlq_app
from hub.cli.docs import docs_app
from hub.cli.ingress import ingress_app
from hub.cli.schemas import schemas_app
from hub.cli.settings import settings_app
from hub.cli.stats import case_app, stats_command
from hub.core.connection import kafka_security
from hub.core.logging import configure_logging
from hub.core.settings import HubSettings
from hub.core.topics import apply_topics

app = typer.Typer(help="After-sales repair integration hub.", no_args_is_help=True)
topics_app = typer.Typer(help="Topics declared as code.", no_args_is_help=True)
app.add_typer(asyncapi_app, name="asyncapi")
app.add_typer(deploy_app, name="deploy")
app.add_typer(dlq_app, name="dlq")
app.add_typer(docs_app, name="docs")
app.add_typer(console_app, name="console")
app.add_typer(ingress_app, name="ingress")
app.add_typer(schemas_app, name="schemas")
app.add_typer(settings_app, name="settings")
app.add_typer(topics_app, name="topics")
app.add_typer(case_app, name="case")
app.command("stats")(stats_command)
acls_app = typer.Typer(
    help="Kafka ACLs declared as code (a secured cluster).", no_args_is_help=True
)
app.add_typer(acls_app, name="acls")
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _show_version(value: bool) -> None:
    if value:
        print(f"hub {package_version('aftersales-hub')}")
        raise typer.Exit


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """After-sales repair integration hub."""


def _settings() -> HubSettings:
    settings = HubSettings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@topics_app.command("apply")
def topics_apply(dry_run: DryRunOption = False, as_json: JsonOption = False) -> None:
    """Create missing topics and align their configs (safe to run again)."""
    settings = _settings()
    report = asyncio.run(
        apply_topics(
            settings.kafka_bootstrap_servers,
            all_topics(settings),
            kafka_security(settings),
            dry_run=dry_run,
        )
    )
    if as_json:
        print(json.dumps({"dry_run": dry_run, **dataclasses.asdict(report)}, indent=2))
        return
    would = "would be " if dry_run else ""
    for name in report.created:
        print(f"{would}created       {name}")
    for name in report.reconfigured:
        print(f"{would}reconfigured  {name}")
    for name in report.repartitioned:
        print(f"{would}repartitioned {name}")
    for warning in report.warnings:
        print(f"warning       {warning}")
    print(f"{len(report.unchanged)} topics unchanged")


@acls_app.command("apply")
def acls_apply(
    show: Annotated[bool, typer.Option("--show", help="Print every binding.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List the bindings it would create; connect to nothing."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Grant each service, partner and operations user exactly its rights (safe to run again).

    Runs as the user in HUB_KAFKA_USERNAME, which must be a super user of the cluster.
    """
    from hub.access import all_bindings  # noqa: PLC0415 - keeps `hub --help` fast
    from hub.core.acls import apply_acls  # noqa: PLC0415

    settings = _settings()
    bindings = sorted(set(all_bindings(settings)))
    config = {"bootstrap_servers": settings.kafka_bootstrap_servers, **kafka_security(settings)}
    applied = len(bindings) if dry_run else asyncio.run(apply_acls(config, bindings))
    if as_json:
        rows = [
            {
                "principal": binding.principal,
                "operation": binding.operation.name,
                "resource_type": binding.resource_type.name.lower(),
                "resource_name": binding.resource_name,
                "pattern": binding.pattern.name.lower(),
            }
            for binding in bindings
        ]
        print(json.dumps({"dry_run": dry_run, "bindings": rows}, indent=2))
        return
    for binding in bindings if show or dry_run else ():
        print(
            f"{binding.principal:28} {binding.operation.name:8} "
            f"{binding.resource_type.name.lower()} {binding.resource_name}"
        )
    print(f"{applied} ACL bindings {'would be put in place' if dry_run else 'in place'}")


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
    from hub.core.tracing import configure_tracing  # noqa: PLC0415

    configure_tracing(settings, service_name=f"hub-{service}")
    from hub.core.loop import run_on_uvloop  # noqa: PLC0415

    run_on_uvloop(runtime.serve())
