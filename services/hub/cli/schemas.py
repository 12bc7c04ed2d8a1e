"""`hub schemas export|check`: JSON Schema files in step with the message models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.core.schemas import check, export
from hub.messages import CATALOGUE

schemas_app = typer.Typer(help="JSON Schema of every published message version.")
DirOption = Annotated[Path, typer.Option("--dir", help="The schema directory.")]


@schemas_app.command("export")
def export_command(directory: DirOption = Path("schemas")) -> None:
    """Write the schema files; refuses a change that would break consumers."""
    try:
        written = export(CATALOGUE, directory)
    except ValueError as error:
        print(f"refused, nothing written:\n{error}")
        raise typer.Exit(1) from error
    for file in written:
        print(f"wrote {directory / file}")
    print(f"{len(written)} file(s) written")


@schemas_app.command("check")
def check_command(directory: DirOption = Path("schemas")) -> None:
    """Fail when a file is stale, missing, orphaned, or a published version was broken."""
    problems = check(CATALOGUE, directory)
    for problem in problems:
        print(f"{'BREAKING' if problem.breaking else 'stale'}  {problem}")
    if problems:
        raise typer.Exit(1)
    print(f"schemas in step: {sum(len(v) for v in CATALOGUE.families().values())} versions")
