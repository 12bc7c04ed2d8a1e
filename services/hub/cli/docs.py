"""`hub docs partner-guide`: the partner guide's generated examples in step with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dispatch.partners import load_partners
from hub.cli.generated import write_or_check
from hub.core.settings import HubSettings
from hub.messages import CATALOGUE

docs_app = typer.Typer(help="Documents generated from the code.", no_args_is_help=True)
DEFAULT_GUIDE = Path("docs/partner-guide.md")


@docs_app.command("partner-guide")
def partner_guide_command(
    path: Annotated[Path, typer.Option(help="The guide.")] = DEFAULT_GUIDE,
    check: Annotated[
        bool, typer.Option("--check", help="Fail if it is stale; write nothing.")
    ] = False,
) -> None:
    """Fill in the guide's generated blocks (example records, rights, signed calls)."""
    from hub.partner_guide import blocks, render  # noqa: PLC0415 - imports every service

    current = path.read_text(encoding="utf-8")
    try:
        text = render(current, blocks(HubSettings(), load_partners(), CATALOGUE))
    except ValueError as error:
        print(f"{path}: {error}")
        raise typer.Exit(1) from error
    write_or_check(path, text, check=check, regenerate="hub docs partner-guide")
