"""`hub schemas export|check`: the JSON Schema files in step with the message models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.core.schemas import IncompatibleSchemaError, check, export
from hub.core.settings import HubSettings, shipped
from hub.messages import CATALOGUE

schemas_app = typer.Typer(
    help="The JSON Schema of every published message version, kept in schemas/.",
    no_args_is_help=True,
)
DirectoryOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="The schema directory (default: HUB_SCHEMAS_DIR, else the shipped one).",
        file_okay=False,
    ),
]


def _directory(given: Path | None) -> Path:
    if given is not None:
        return given
    configured = HubSettings().schemas_dir
    return Path(configured) if configured else shipped("schemas")


@schemas_app.command("export")
def export_command(directory: DirectoryOption = None) -> None:
    """Write the schema files; refuses, writing nothing, a change that would break consumers."""
    directory = _directory(directory)
    try:
        changes = export(CATALOGUE, directory)
    except IncompatibleSchemaError as error:
        print(f"refused, nothing written to {directory}:")
        for problem in error.problems:
            print(f"  {problem}")
        raise typer.Exit(1) from error
    for change in changes:
        print(change)
    # Export never deletes a file: a published version going away needs a person's decision.
    for problem in check(CATALOGUE, directory):
        print(f"still to do: {problem}")
    print(f"{directory}: {len(changes)} file(s) written")


@schemas_app.command("check")
def check_command(directory: DirectoryOption = None) -> None:
    """Fail when a file is missing, stale or orphaned, or a published version changed badly."""
    directory = _directory(directory)
    problems = check(CATALOGUE, directory)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{directory}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    versions = sum(len(models) for models in CATALOGUE.families().values())
    print(f"{directory}: OK, {versions} versions in step with the models")
