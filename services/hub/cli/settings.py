"""`hub settings doc`: docs/configuration.md in step with the settings models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

    text = render_configuration()
    current = output.read_text(encoding="utf-8") if output.exists() else None
    if check:
        if current != text:
            print(f"{output}: stale; run `hub settings doc`")
            raise typer.Exit(1)
        print(f"{output}: OK")
        return
    if current != text:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    print(f"{output}: {'written' if current != text else 'unchanged'}")
