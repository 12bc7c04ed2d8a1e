"""`python -m lab.bench`: measure, print the table, write the JSON."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hub.core.logging import configure_logging
from lab.bench.report import summarise, table, write_json
from lab.bench.runner import ROTATION, BenchOptions, run_bench

DEFAULT_OUTPUT = Path(".hub/bench/results.json")
SKIPPABLE = (*ROTATION, "e2e")

app = typer.Typer(add_completion=False)


@app.command()
def bench(
    *,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of the alternated variants.")] = 3,
    count: Annotated[int, typer.Option(min=100, help="Records per variant and round.")] = 2000,
    e2e_seconds: Annotated[
        float, typer.Option(min=1, help="How long cases are offered end to end.")
    ] = 60.0,
    rate: Annotated[
        float, typer.Option(min=1, help="Cases per second offered end to end.")
    ] = 200.0,
    perf_records: Annotated[
        int, typer.Option(min=1000, help="Records ProducerPerformance sends per round.")
    ] = 100_000,
    skip: Annotated[
        list[str] | None, typer.Option(help=f"Leave a variant out: {', '.join(SKIPPABLE)}.")
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(help="Run a variant under py-spy; collapsed stacks go next to the logs."),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = DEFAULT_OUTPUT,
) -> None:
    """Measure the hub's hop next to raw aiokafka and bare FastStream, in one run on one broker."""
    unknown = (set(skip or ()) | set(profile or ())) - set(SKIPPABLE)
    if unknown:
        raise typer.BadParameter(f"unknown variant(s) {sorted(unknown)}; known: {SKIPPABLE}")
    configure_logging("WARNING")
    # A fresh broker answers "coordinator not available" for a moment; not worth showing.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # Wide enough for the table when stdout is a pipe (make, CI logs).
    console = Console(width=None if sys.stdout.isatty() else 150)
    options = BenchOptions(
        rounds=rounds,
        count=count,
        e2e_seconds=e2e_seconds,
        rate=rate,
        perf_records=perf_records,
        skip=frozenset(skip or ()),
        profile=frozenset(profile or ()),
        log_dir=output.parent / "logs",
    )
    run = run_bench(options, say=console.print)
    summary = summarise(run)
    console.print(table(run, summary))
    write_json(run, summary, output)
    console.print(f"figures written to {output}; worker logs in {options.log_dir}")
