"""`hub ingress`: tokens for platform backends, and the front door's OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.generated import write_or_check
from hub.core.settings import HubSettings
from hub.messages import CATALOGUE

ingress_app = typer.Typer(
    help="The HTTP front door (`hub run ingress`): backend tokens and its OpenAPI document.",
    no_args_is_help=True,
)
DEFAULT_OPENAPI = Path("docs/openapi/ingress.json")


@ingress_app.command("new-token")
def new_token_command(
    backend: Annotated[str, typer.Argument(help="The backend's name, e.g. shop.")],
    source: Annotated[
        list[str], typer.Option("--source", help="A ce_source it may send (repeatable).")
    ],
) -> None:
    """Print a new token (give it to the backend) and its entry for HUB_INGRESS_BACKENDS."""
    from ingress.auth import new_token, token_digest  # noqa: PLC0415 - keeps --help fast

    token = new_token()
    entry = {backend: {"token_sha256": token_digest(token), "sources": source}}
    print(f"token (shown once, give it to {backend}): {token}")
    print(f"entry for HUB_INGRESS_BACKENDS or its file: {json.dumps(entry)}")


@ingress_app.command("openapi")
def openapi_command(
    path: Annotated[Path, typer.Option(help="Where the document lives.")] = DEFAULT_OPENAPI,
    check: Annotated[
        bool, typer.Option("--check", help="Fail if it is stale; write nothing.")
    ] = False,
) -> None:
    """Write the front door's OpenAPI document (or check the committed one)."""
    from ingress.app import render_openapi  # noqa: PLC0415 - FastAPI only for this command

    text = render_openapi(HubSettings(), CATALOGUE)
    write_or_check(path, text, check=check, regenerate="hub ingress openapi")
