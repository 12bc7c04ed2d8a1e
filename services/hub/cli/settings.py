"""`hub settings doc`: docs/configuration.md in step with the settings models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli.generated import write_or_check

settings_app = typer.Typer(
    help="The environment variables the hub reads, documented from its settings models.",
    no_args_is_help=True,
)


@settings_app.command("doc")
def doc_command(
    output: Annotated[
        Path, typer.Option("--output", help="Where the document goes.", dir_okay=False)
    ] = Path("docs/configuration.md"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; fail when the file is stale.")
    ] = False,
) -> None:
    """Write docs/configuration.md: every variable, its type, default and description."""
    from hub.settings_doc import render_configuration  # noqa: PLC0415 - keeps `hub --help` fast

    write_or_check(output, render_configuration(), check=check, regenerate="hub settings doc")
