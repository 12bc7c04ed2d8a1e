"""Files generated from the code: written, or checked for being in step (a stale one fails)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path


def write_or_check(path: Path, text: str, *, check: bool, regenerate: str) -> None:
    """Write `text` to `path`; with `check`, write nothing and exit 1 if the file differs."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        if current != text:
            print(f"{path} is stale: run `{regenerate}`")
            raise typer.Exit(1)
        print(f"{path}: OK")
        return
    if current != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"{path}: {'written' if current != text else 'unchanged'}")
