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
SKIPPABLE = (*ROTATION, "e2e", "ingress")

app = typer.Typer(add_completion=False)


def _rates(text: str) -> tuple[float, ...]:
    """`200,1000` as (200.0, 1000.0); every rate positive."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise typer.BadParameter(f"not a list of rates: {text!r}") from error
    if not rates or min(rates) <= 0:
        raise typer.BadParameter(f"rates must be positive numbers: {text!r}")
    return rates


@app.command()
def bench(
    *,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of the alternated variants.")] = 3,
    count: Annotated[int, typer.Option(min=100, help="Records per variant and round.")] = 5000,
    e2e_seconds: Annotated[
        float, typer.Option(min=1, help="How long cases are offered end to end.")
    ] = 60.0,
    rates: Annotated[
        str,
        typer.Option(
            "--rates",
            "--rate",
            help="Cases per second offered end to end, comma-separated: one measurement each.",
        ),
    ] = "200,1000",
    deadline_ms: Annotated[
        float, typer.Option(min=1, help="An e2e case is in time within this many ms.")
    ] = 1000.0,
    max_records: Annotated[
        int, typer.Option(min=1, help="Batch bound of raw-batch, faststream-batch and the hub.")
    ] = 500,
    dlq_letters: Annotated[
        int, typer.Option(min=100, help="Dead letters `hub dlq replay` sends per round.")
    ] = 20_000,
    perf_records: Annotated[
        int, typer.Option(min=1000, help="Records ProducerPerformance sends per round.")
    ] = 100_000,
    ingress_rate: Annotated[
        float, typer.Option(min=1, help="Requests per second offered to `hub run ingress`.")
    ] = 1000.0,
    ingress_seconds: Annotated[
        float, typer.Option(min=1, help="Length of each ingress phase (open, closed loop).")
    ] = 20.0,
    skip: Annotated[
        list[str] | None, typer.Option(help=f"Leave a variant out: {', '.join(SKIPPABLE)}.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Measure only these variants (e.g. --only ingress); the rest skipped."),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(help="Run a variant under py-spy; collapsed stacks go next to the logs."),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the JSON goes.")] = DEFAULT_OUTPUT,
) -> None:
    """Measure the hub's hop next to raw aiokafka and bare FastStream, in one run on one broker."""
    unknown = (set(skip or ()) | set(profile or ()) | set(only or ())) - set(SKIPPABLE)
    if unknown:
        raise typer.BadParameter(f"unknown variant(s) {sorted(unknown)}; known: {SKIPPABLE}")
    offered = _rates(rates)
    configure_logging("WARNING")
    # A fresh broker answers "coordinator not available" for a moment; not worth showing.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # Wide enough for the table when stdout is a pipe (make, CI logs).
    console = Console(width=None if sys.stdout.isatty() else 150)
    options = BenchOptions(
        rounds=rounds,
        count=count,
        e2e_seconds=e2e_seconds,
        rates=offered,
        deadline_ms=deadline_ms,
        max_records=max_records,
        dlq_letters=dlq_letters,
        perf_records=perf_records,
        skip=frozenset(skip or ()) | (frozenset(SKIPPABLE) - set(only) if only else frozenset()),
        profile=frozenset(profile or ()),
        log_dir=output.parent / "logs",
        ingress_rate=ingress_rate,
        ingress_seconds=ingress_seconds,
    )
    run = run_bench(options, say=console.print)
    summary = summarise(run)
    console.print(table(run, summary))
    write_json(run, summary, output)
    console.print(f"figures written to {output}; worker logs in {options.log_dir}")
