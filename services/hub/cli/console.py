"""`hub console ...`: serve the on-call web console, make password hashes for its operators."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from hub.console.auth import hash_password
from hub.core.logging import configure_logging

console_app = typer.Typer(
    help="The on-call web console for dead letters (the operations of `hub dlq`).",
    no_args_is_help=True,
)


@console_app.command("serve")
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default $HUB_CONSOLE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default $HUB_CONSOLE_PORT, 8470).")
    ] = None,
) -> None:
    """Serve the console; operators come from HUB_CONSOLE_OPERATORS."""
    import uvicorn  # noqa: PLC0415 - keeps `hub --help` fast

    from hub.console.app import create_app  # noqa: PLC0415
    from hub.console.settings import ConsoleSettings  # noqa: PLC0415
    from hub.core.settings import HubSettings  # noqa: PLC0415

    settings = HubSettings()
    config = ConsoleSettings()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    if not config.operators:
        print("warning: HUB_CONSOLE_OPERATORS is empty, nobody can sign in", file=sys.stderr)
    uvicorn.run(
        create_app(settings, config),
        host=host or config.host,
        port=config.port if port is None else port,
        log_config=None,  # structlog owns the log output
        access_log=False,
    )


@console_app.command("hash-password")
def hash_password_command(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from stdin (scripts).")
    ] = False,
) -> None:
    """Print the scrypt hash of a password, for HUB_CONSOLE_OPERATORS."""
    if stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise typer.BadParameter("an empty password")
    print(hash_password(password))
