"""`hub asyncapi export|check`: the partners' AsyncAPI documents in step with the declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dispatch.partners import load_partners
from hub.asyncapi import build_documents, check, export
from hub.core.settings import HubSettings
from hub.messages import CATALOGUE

asyncapi_app = typer.Typer(
    help="AsyncAPI 3.0 documents for the platform and each Kafka-native partner (docs/asyncapi).",
    no_args_is_help=True,
)
DirectoryOption = Annotated[
    Path,
    typer.Option("--dir", help="Where the documents live.", file_okay=False),
]
DEFAULT_DIRECTORY = Path("docs/asyncapi")


def _documents() -> dict[str, dict[str, Any]]:
    return build_documents(HubSettings(), load_partners(), CATALOGUE)


@asyncapi_app.command("export")
def export_command(directory: DirectoryOption = DEFAULT_DIRECTORY) -> None:
    """Write the documents that changed."""
    written = export(_documents(), directory)
    for name in written:
        print(f"wrote {directory / name}")
    for problem in check(_documents(), directory):
        print(f"still to do: {problem}")
    print(f"{directory}: {len(written)} document(s) written")


@asyncapi_app.command("check")
def check_command(directory: DirectoryOption = DEFAULT_DIRECTORY) -> None:
    """Fail when a document is missing, stale or has no audience."""
    documents = _documents()
    problems = check(documents, directory)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{directory}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    print(f"{directory}: OK, {len(documents)} documents in step with the declarations")
