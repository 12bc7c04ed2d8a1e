"""`hub stats` and `hub case show`: figures and timelines from the tracker's case snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub.core.logging import configure_logging
from hub.core.settings import HubSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hub.messages.scores import CourierScoredV1
    from hub.messages.tracker import CaseStatusV1
    from tracker.stats import Stats

case_app = typer.Typer(help="One case as the tracker sees it.", no_args_is_help=True)


def _settings() -> HubSettings:
    settings = HubSettings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _snapshots(settings: HubSettings) -> dict[str, CaseStatusV1]:
    from tracker.snapshots import read_snapshots  # noqa: PLC0415 - keeps `hub --help` fast

    return asyncio.run(read_snapshots(settings))


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(f"not an ISO date or time: {text!r}") from error
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _local(at: datetime | None) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render_scorecards(cards: Mapping[str, CourierScoredV1], console: Console) -> None:
    """The couriers' latest scorecards (what dispatch ranks by) as a rich table."""
    table = Table(title="courier scores (what dispatch ranks by)", title_justify="left")
    for column in ("courier", "score", "standing", "accepted", "on time", "exc", "damage",
                   "SLA", "window"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"courier", "standing"} else "right")
    for code, card in cards.items():
        figures = card.figures
        table.add_row(
            code,
            f"{card.score:.2f}",
            card.standing.value,
            f"{figures.accepted}/{figures.accepted + figures.failed}",
            f"{figures.pickups - figures.late_pickups}/{figures.pickups}",
            str(figures.exceptions),
            str(figures.damages),
            str(figures.sla_breaches),
            _duration(card.window_s),
        )
    console.print(table)


def _scorecards(settings: HubSettings) -> dict[str, CourierScoredV1]:
    from tracker.snapshots import read_scorecards  # noqa: PLC0415 - keeps `hub --help` fast

    return asyncio.run(read_scorecards(settings))


def render_stats(stats: Stats, console: Console, title: str) -> None:
    """The statistics as rich tables."""
    console.print(f"[bold]{title}[/bold]: {stats.cases} cases")
    faults = Table(title="fault types", title_justify="left")
    faults.add_column("fault type")
    faults.add_column("cases", justify="right")
    for fault, count in stats.fault_types.items():
        faults.add_row(fault, str(count))
    stages = Table(title="handling time per stage", title_justify="left")
    for column in ("stage", "cases", "p50", "p90"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for stage, times in stats.stages.items():
        stages.add_row(stage, str(times.cases), _duration(times.p50_s), _duration(times.p90_s))
    couriers = Table(title="couriers", title_justify="left")
    for column in ("courier", "orders", "accepted", "rate", "pickups", "delay p50",
                   "delay p90", "SLA"):  # fmt: skip
        couriers.add_column(column, justify="left" if column == "courier" else "right")
    for code, figures in stats.couriers.items():
        rate = figures.acceptance_rate
        couriers.add_row(
            code,
            str(figures.orders),
            str(figures.accepted),
            "-" if rate is None else f"{rate:.0%}",
            str(figures.pickups),
            _duration(figures.pickup_delay_p50_s),
            _duration(figures.pickup_delay_p90_s),
            str(figures.sla_breaches),
        )
    ratings = Table(title="ratings and SLA", title_justify="left")
    ratings.add_column("figure")
    ratings.add_column("value", justify="right")
    mean = stats.ratings.mean
    ratings.add_row("ratings", str(stats.ratings.count))
    ratings.add_row("mean score", "-" if mean is None else f"{mean:.2f}")
    for score, count in stats.ratings.by_score.items():
        ratings.add_row(f"  {'★' * score}", str(count))
    for clock, count in stats.sla_breaches.items():
        ratings.add_row(f"{clock} SLA breached (cases)", str(count))
    ratings.add_row("complaints (in arbitration)", str(stats.complaints))
    claims = stats.freight_claims
    ratings.add_row("freight claims (退货运费险)", str(claims.claims))
    ratings.add_row("  approved / rejected / pending",
                    f"{claims.approved} / {claims.rejected} / {claims.pending}")  # fmt: skip
    ratings.add_row("  claimed / paid", f"¥{claims.claimed} / ¥{claims.paid}")
    express = stats.express_refunds
    refunds = Table(title="express refunds (at pickup)", title_justify="left")
    refunds.add_column("figure")
    refunds.add_column("value", justify="right")
    refunds.add_row("express refunds", str(express.count))
    refunds.add_row("amount refunded", f"¥{express.amount}")
    refunds.add_row("claw-backs", str(express.clawbacks))
    refunds.add_row("amount clawed back", f"¥{express.clawback_amount}")
    rate = express.clawback_rate
    refunds.add_row("claw-back rate", "-" if rate is None else f"{rate:.1%}")
    for reason, count in express.clawback_reasons.items():
        refunds.add_row(f"  {reason}", str(count))
    for table in (faults, stages, couriers, ratings, refunds, _parts_table(stats)):
        console.print(table)


def _parts_table(stats: Stats) -> Table:
    """Spare parts: what an operator asks first is how many cases wait, and for how long."""
    parts = stats.parts
    table = Table(title="spare parts", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("reservations", str(parts.reservations))
    table.add_row("shortages", str(parts.shortages))
    table.add_row("waiting for parts now", str(parts.waiting))
    table.add_row("replaced after the wait", str(parts.replaced))
    table.add_row("wait p50", _duration(parts.wait_p50_s))
    table.add_row("wait p90", _duration(parts.wait_p90_s))
    return table


def stats_command(
    since: Annotated[
        str | None, typer.Option(help="Cases opened at or after (ISO date/time, UTC if naive).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Cases opened before (ISO date/time).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Fault types, stage times, couriers and their scores, ratings, refunds, parts, claims."""
    from tracker.stats import compute_stats  # noqa: PLC0415 - keeps `hub --help` fast

    settings = _settings()
    start, end = _when(since), _when(until)
    stats = compute_stats(_snapshots(settings).values(), since=start, until=end)
    # The latest scorecards, whatever the range: they cover their own sliding window.
    cards = _scorecards(settings)
    if as_json:
        # Sums of money stay exact: Decimal as its text.
        figures = dataclasses.asdict(stats)
        figures["scorecards"] = {code: card.model_dump(mode="json") for code, card in cards.items()}
        print(json.dumps(figures, ensure_ascii=False, indent=2, default=str))
        return
    span = f"{start.isoformat() if start else 'start'} .. {end.isoformat() if end else 'now'}"
    console = Console()
    render_stats(stats, console, f"cases opened {span}")
    render_scorecards(cards, console)


@case_app.command("show")
def case_show(
    case_id: Annotated[str, typer.Argument(help="The case id, e.g. AS1A2B3C...")],
    as_json: Annotated[bool, typer.Option("--json", help="The snapshot as JSON.")] = False,
) -> None:
    """A case's status, clocks and timeline."""
    snapshot = _snapshots(_settings()).get(case_id)
    if snapshot is None:
        print(f"no case {case_id} on the tracker's status topic")
        raise typer.Exit(1)
    if as_json:
        print(snapshot.model_dump_json(indent=2))
        return
    console = Console()
    console.print(
        f"[bold]{snapshot.case_id}[/bold] {snapshot.status}  {snapshot.request_type} "
        f"{snapshot.service_mode} {snapshot.category}  fault {snapshot.fault_type or '-'} "
        f"courier {snapshot.courier or '-'}"
        + ("  [red]in arbitration[/red]" if snapshot.in_arbitration else "")
    )
    timeline = Table(title="timeline", title_justify="left")
    for column in ("at", "event", "status", "detail"):
        timeline.add_column(column)
    for entry in snapshot.timeline:
        style = None if entry.applied else "dim"
        detail = entry.detail if entry.applied else f"not applied: {entry.detail}"
        timeline.add_row(
            _local(entry.at),
            entry.kind,
            entry.status,
            detail,
            style=style,
        )
    console.print(timeline)
    for clock in snapshot.clocks:
        levels = ", ".join(f"L{level}" for level in clock.breached_levels) or "none"
        console.print(
            f"SLA {clock.clock}: started {_local(clock.started_at)}, "
            f"stopped {_local(clock.stopped_at)}, breached {levels}"
        )
    if snapshot.rating is not None:
        console.print(f"rating {snapshot.rating.score}/5 {snapshot.rating.comment}")
