"""`hub dlq ...`: the on-call tools for dead letters; every command writes an audit event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path  # noqa: TC003 - typer reads the `--file` annotation at run time
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import structlog
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from hub.core.errors import PermanentError
from hub.core.logging import configure_logging
from hub.core.loop import run_on_uvloop
from hub.core.settings import HubSettings
from hub.ops.actions import NotFoundError, Ops, default_registry
from hub.ops.audit import operator
from hub.ops.dlq import Ref, Selection, group_by_fingerprint, parse_time, summarise
from hub.ops.edit import parse_assignment
from hub.ops.replay import DEFAULT_MAX_REPLAYS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from hub.messages.ops import OpsActionAuditedV1
    from hub.ops.dlq import DeadLetter
    from hub.ops.dryrun import Prediction
    from hub.ops.replay import Checkpoint

dlq_app = typer.Typer(
    help="Dead letters: list, group, show, replay (dry-run, resume), edit, purge. "
    "Every command writes an audit event to hub.ops.audit.",
    no_args_is_help=True,
)
console = Console()
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
GroupOption = Annotated[
    str | None, typer.Option("--group", "-g", help="Only this service (consumer group).")
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why; goes into the audit.")]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts (default: $HUB_OPERATOR, else login name).")
]


@dlq_app.callback()
def _logging() -> None:
    # Logs go to stderr and stay quiet by default: stdout carries the answer.
    if not structlog.is_configured():
        configure_logging(os.environ.get("HUB_LOG_LEVEL", "WARNING"), "console")
        logging.getLogger("aiokafka").setLevel(logging.ERROR)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return run_on_uvloop(work())
    except NotFoundError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from error


SCAN_PROGRESS_MIN = 2000
"""Scans of fewer records finish before a bar would be worth drawing."""


class _ScanProgress:
    """A bar on stderr while a long scan reads dead-letter topics (on a terminal only)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            if total < SCAN_PROGRESS_MIN or done >= total or not sys.stderr.isatty():
                return
            self._progress = Progress(
                TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("scan", total=total)
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=total)
        if done >= total:
            self._progress.stop()
            self._progress = self._task = None


def _ops(by: str | None, reason: str) -> Ops:
    return Ops(HubSettings(), actor=by or operator(), reason=reason, scan_progress=_ScanProgress())


def _time(text: str | None) -> datetime | None:
    """`--since`/`--until`: a time or a duration ago; anything else is a bad argument (exit 2)."""
    try:
        return parse_time(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


def _short(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%m-%d %H:%M:%SZ") if at else "-"


def _emit_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "ref": str(letter.ref),
        "group": letter.group,
        "case_id": letter.case_id,
        "ce_id": letter.idempotency_key,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "stage": letter.stage,
        "fingerprint": letter.fingerprint,
        "attempts": letter.attempts,
        "replay_count": letter.replay_count,
        "dead_lettered_at": _when(letter.dead_lettered_at),
    }


@dlq_app.command("list")
def list_command(
    group: GroupOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Per service: how many dead letters, the oldest and newest, the top fingerprints."""

    async def work() -> list[DeadLetter]:
        async with _ops(by, "") as ops:
            return await ops.inspect("list", Selection(group=group))

    summaries = summarise(_run(work))
    if as_json:
        _emit_json(
            [
                {
                    "group": s.group,
                    "count": s.count,
                    "oldest": _when(s.oldest),
                    "newest": _when(s.newest),
                    "top_fingerprints": dict(s.top()),
                    "topics": dict(s.topics),
                }
                for s in summaries
            ]
        )
        return
    table = Table(title="Dead letters per service")
    for column in ("service", "count", "oldest", "newest", "top fingerprints"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for s in summaries:
        top = "\n".join(f"{fp} x{n}" for fp, n in s.top())
        table.add_row(s.group, str(s.count), _short(s.oldest), _short(s.newest), top)
    console.print(table if summaries else "no dead letters")


@dlq_app.command("groups")
def groups_command(
    group: GroupOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Dead letters grouped by fingerprint (error class + normalised message + stage)."""

    async def work() -> list[DeadLetter]:
        async with _ops(by, "") as ops:
            return await ops.inspect("groups", Selection(group=group))

    groups = group_by_fingerprint(_run(work))
    if as_json:
        _emit_json(
            [
                {
                    "fingerprint": g.fingerprint,
                    "group": g.group,
                    "count": g.count,
                    "error_class": g.error_class,
                    "stage": g.stage,
                    "example_message": g.example_message,
                    "first_seen": _when(g.first_seen),
                    "last_seen": _when(g.last_seen),
                    "schemas": dict(g.schemas),
                    "code_versions": dict(g.code_versions),
                }
                for g in groups
            ]
        )
        return
    table = Table(title="Dead letters by fingerprint")
    table.add_column("fingerprint / service", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("first / last seen", no_wrap=True)
    table.add_column("error (stage) / schemas / code versions", overflow="fold")
    for g in groups:
        table.add_row(
            f"{g.fingerprint}\n{g.group}",
            str(g.count),
            f"{_short(g.first_seen)}\n{_short(g.last_seen)}",
            escape(f"{g.error_class.rpartition('.')[2]} ({g.stage}): {g.example_message[:120]}")
            + escape(f"\n{', '.join(g.schemas)}; code {', '.join(g.code_versions)}"),
        )
    console.print(table if groups else "no dead letters")


@dlq_app.command("show")
def show_command(
    ref: Annotated[str, typer.Argument(help="topic:partition:offset, or a ce_id.")],
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: every header, the decoded payload (or why it does not decode), the case."""

    async def work() -> Any:  # noqa: ANN401 - a Shown, imported lazily
        async with _ops(by, "") as ops:
            return await ops.show(ref, default_registry())

    shown = _run(work)
    letter = shown.letter
    headers = [(name, value.decode(errors="replace")) for name, value in letter.record.headers]
    payload = shown.event.model_dump(mode="json") if shown.event is not None else None
    if as_json:
        _emit_json(
            {
                **_letter_json(letter),
                "headers": [[name, value] for name, value in headers],
                "payload": payload,
                "payload_type": type(shown.event).ce_type() if shown.event else None,
                "problem": shown.problem,
                "raw_value": (letter.record.value or b"").decode(errors="replace")
                if payload is None
                else None,
            }
        )
        return
    console.print(escape(f"{letter.ref}  service {letter.group}  case {letter.case_id}"))
    table = Table("header", "value", show_lines=False)
    for name, value in headers:
        # The last lines of a traceback name the failure; the whole is in --json.
        shown_value = value if name != "x-hub-error-stacktrace" else value[-700:].strip()
        table.add_row(name, escape(shown_value))
    console.print(table)
    if payload is not None:
        console.print(f"payload decodes and validates as {type(shown.event).ce_type()}:")
        console.print_json(data=payload)
    else:
        console.print(f"[red]payload does not decode:[/red] {escape(shown.problem or '')}")
        console.print((letter.record.value or b"")[:2000].decode(errors="replace"), markup=False)


def _selection(
    *,
    group: str | None,
    refs: list[str] | None,
    ids: list[str] | None,
    fingerprint: str | None,
    error_class: str | None,
    since: str | None,
    until: str | None,
) -> Selection:
    try:
        parsed = frozenset(Ref.parse(text) for text in refs or ())
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--ref") from error
    return Selection(
        group=group,
        refs=parsed,
        ids=frozenset(ids or ()),
        fingerprint=fingerprint,
        error_class=error_class,
        since=_time(since),
        until=_time(until),
    )


def _show_predictions(predictions: list[Prediction], as_json: bool) -> None:
    if as_json:
        _emit_json(
            [
                {"ref": str(p.ref), "verdict": p.verdict, "stage": p.stage, "reason": p.reason}
                for p in predictions
            ]
        )
        return
    table = Table(title="Dry-run: what a replay would do")
    for column in ("ref", "verdict", "stage", "reason"):
        table.add_column(column, overflow="fold")
    for p in predictions:
        colour = "green" if p.passes else "yellow" if p.verdict != "fail" else "red"
        table.add_row(str(p.ref), f"[{colour}]{p.verdict}[/{colour}]", p.stage, escape(p.reason))
    console.print(table)
    counts: dict[str, int] = {}
    for p in predictions:
        counts[p.verdict] = counts.get(p.verdict, 0) + 1
    console.print(", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())))


async def _dry_run(
    selection: Selection, max_replays: int, by: str | None, reason: str
) -> list[Prediction]:
    async with _ops(by, reason) as ops:
        return await ops.dry_run_with_handler(
            selection, registry=default_registry(), max_replays=max_replays
        )


def _checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return checkpoint.model_dump(mode="json", exclude={"refs", "end", "position"}) | {
        "remaining": checkpoint.remaining
    }


async def _with_stop_signals(work: Callable[[asyncio.Event], Awaitable[Checkpoint]]) -> Checkpoint:
    """Ctrl-C or SIGTERM end the replay at the next chunk boundary, with its checkpoint saved."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await work(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)


@dlq_app.command("replay")
def replay_command(  # noqa: PLR0917 - typer passes options by keyword; one per criterion
    group: GroupOption = None,
    ref: Annotated[
        list[str] | None, typer.Option("--ref", help="topic:partition:offset (repeatable).")
    ] = None,
    event_id: Annotated[
        list[str] | None, typer.Option("--id", help="A ce_id (repeatable).")
    ] = None,
    fingerprint: Annotated[str | None, typer.Option(help="One fingerprint group.")] = None,
    error_class: Annotated[
        str | None, typer.Option(help="An error class, full or its last part.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Dead-lettered at or after (RFC 3339, or e.g. 2h ago).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Dead-lettered before (RFC 3339 or 2h).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="At most this many records per second.")
    ] = None,
    max_replays: Annotated[
        int, typer.Option(help="A letter replayed this often already is parked instead.")
    ] = DEFAULT_MAX_REPLAYS,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Re-validate and pre-check only; send nothing.")
    ] = False,
    resume: Annotated[
        str | None, typer.Option(help="Resume an interrupted replay by its id.")
    ] = None,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a selection to each failing service's own replay topic (`<group>.replay`).

    Rate-limited, checkpointed after every acknowledged chunk (resume with --resume ID);
    letters replayed --max-replays times already go to `<group>.parked` instead.
    """
    selection = _selection(
        group=group,
        refs=ref,
        ids=event_id,
        fingerprint=fingerprint,
        error_class=error_class,
        since=since,
        until=until,
    )

    if dry_run:
        _show_predictions(_run(lambda: _dry_run(selection, max_replays, by, reason)), as_json)
        return

    async def replay() -> Checkpoint:
        async with _ops(by, reason) as ops:
            if resume:
                try:
                    checkpoint = ops.load_replay(resume)
                except FileNotFoundError as error:
                    raise NotFoundError(f"no replay {resume} under {ops.state_dir}") from error
            else:
                checkpoint = await ops.plan_replay(selection, max_replays=max_replays, rate=rate)
            with Progress(
                TextColumn(f"replay {checkpoint.replay_id}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent {task.fields[sent]} parked {task.fields[parked]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                disable=as_json,
            ) as progress:
                task = progress.add_task(
                    "replay",
                    total=checkpoint.scanned + checkpoint.remaining,
                    completed=checkpoint.scanned,
                    sent=checkpoint.sent,
                    parked=checkpoint.parked,
                )

                def advance(cp: Checkpoint) -> None:
                    progress.update(task, completed=cp.scanned, sent=cp.sent, parked=cp.parked)

                return await _with_stop_signals(
                    lambda stop: ops.replay(checkpoint, stop=stop, progress=advance)
                )

    checkpoint = _run(replay)
    if as_json:
        _emit_json(_checkpoint_json(checkpoint))
    elif checkpoint.done:
        console.print(
            f"replay {checkpoint.replay_id}: {checkpoint.sent} sent, "
            f"{checkpoint.parked} parked ({checkpoint.already_parked} parked before), done"
        )
    else:
        console.print(
            f"replay {checkpoint.replay_id} interrupted after {checkpoint.sent} sent; "
            f"resume with: hub dlq replay --resume {checkpoint.replay_id}"
        )
    if not checkpoint.done:
        raise typer.Exit(3)


@dlq_app.command("edit")
def edit_command(  # noqa: PLR0917 - typer passes options by keyword
    ref: Annotated[str, typer.Argument(help="topic:partition:offset, or a ce_id.")],
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", help="path.to.field=text (the value is a string); repeatable."),
    ] = None,
    json_assignments: Annotated[
        list[str] | None,
        typer.Option("--set-json", help="path.to.field=JSON (number, null, object); repeatable."),
    ] = None,
    payload_file: Annotated[
        Path | None, typer.Option("--file", help="A whole new JSON payload.", exists=True)
    ] = None,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay an edited copy of one dead letter; the original stays, the diff goes to the audit."""
    try:
        changes_given = dict(
            [parse_assignment(text) for text in assignments or ()]
            + [parse_assignment(text, as_json=True) for text in json_assignments or ()]
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--set / --set-json") from error
    if not changes_given and payload_file is None:
        raise typer.BadParameter("give --set path=text, --set-json path=json or --file new.json")
    payload = json.loads(payload_file.read_text(encoding="utf-8")) if payload_file else None

    async def work() -> Any:  # noqa: ANN401 - an Edited, imported lazily
        async with _ops(by, reason) as ops:
            return await ops.edit(
                ref, registry=default_registry(), assignments=changes_given, payload=payload
            )

    try:
        edited = _run(work)
    except (ValueError, TypeError, PermanentError) as error:  # an invalid edit: nothing sent
        console.print(f"[red]refused, nothing sent:[/red] {escape(str(error))}")
        raise typer.Exit(1) from error
    changes = [change.model_dump(mode="json") for change in edited.changes]
    if as_json:
        _emit_json({"ref": str(edited.letter.ref), "replay_id": edited.replay_id, "diff": changes})
        return
    table = Table("field", "before", "after", title=f"edited copy of {edited.letter.ref}")
    for change in changes:
        table.add_row(
            escape(change["path"]),
            escape(json.dumps(change["before"], ensure_ascii=False)),
            escape(json.dumps(change["after"], ensure_ascii=False)),
        )
    console.print(table)
    console.print(f"sent to {edited.letter.group}.replay as replay {edited.replay_id}")


@dlq_app.command("purge")
def purge_command(  # noqa: PLR0917 - typer passes options by keyword
    topic: Annotated[str, typer.Argument(help="A dead-letter topic (`<topic>.<group>.dlq`).")],
    partition: Annotated[int | None, typer.Option(help="Only this partition.")] = None,
    before_offset: Annotated[
        int | None, typer.Option(help="Delete records below this offset (default: all).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for scripts).")] = False,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete dead letters up to an offset (Kafka delete-records), after confirmation."""

    async def work() -> int:
        async with _ops(by, reason) as ops:
            plan = await ops.purge_plan(topic, partition=partition, before_offset=before_offset)
            count = sum(upto - first for first, upto in plan.values())
            if not as_json:
                for tp, (first, upto) in sorted(plan.items()):
                    console.print(f"{tp.topic}:{tp.partition}  offsets {first}..{upto - 1}")
            if count == 0:
                return await ops.purge(plan)  # nothing to delete, still audited
            if not yes and not typer.confirm(f"delete {count} dead letter(s)?", default=False):
                raise typer.Abort
            return await ops.purge(plan)

    try:
        deleted = _run(work)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="TOPIC") from error
    if as_json:
        _emit_json({"topic": topic, "deleted": deleted})
    else:
        console.print(f"{deleted} dead letter(s) deleted from {topic}")


@dlq_app.command("audit")
def audit_command(
    group: GroupOption = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339, or e.g. 24h ago.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Operator actions on `hub.ops.audit`, oldest first (reading them is not audited)."""

    async def work() -> list[OpsActionAuditedV1]:
        async with _ops(None, "") as ops:
            return await ops.trail(group=group, since=_time(since))

    events = _run(work)
    if as_json:
        _emit_json([event.model_dump(mode="json") for event in events])
        return
    table = Table(title="Operator actions")
    for column in ("at", "who", "action", "service", "count", "outcome / reason"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for event in events:
        outcome = ", ".join(f"{name} {n}" for name, n in event.outcome.items())
        detail = "\n".join(part for part in (outcome, event.reason) if part)
        table.add_row(
            _short(event.at),
            escape(event.actor),
            event.action,
            event.group or "-",
            str(event.count),
            escape(detail),
        )
    console.print(table if events else "no operator actions")
