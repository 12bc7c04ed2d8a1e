"""The console's web application: each page and action goes through `hub.ops`, like `hub dlq`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlencode

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.console.auth import Session, Sessions, authenticate, same_token
from hub.console.runs import Runs
from hub.core.errors import PermanentError
from hub.core.service import KafkaSink
from hub.core.topics import CASE_STATUS
from hub.ops.actions import NotFoundError, Ops, default_registry
from hub.ops.dlq import Ref, Selection, parse_time
from hub.ops.index import TREND_BUCKETS, LetterIndex
from hub.ops.kafka_io import partition_key
from hub.ops.replay import DEFAULT_MAX_REPLAYS, saved_checkpoints

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from aiokafka import TopicPartition

    from hub.console.settings import ConsoleSettings
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from hub.ops.actions import Edited
    from hub.ops.replay import Checkpoint

log = structlog.get_logger(__name__)
T = TypeVar("T")

SESSION_COOKIE = "hub_console_session"
STOP_WAIT_S = 10.0
LOGIN_COOKIE = "hub_console_login"
STATIC = Path(__file__).parent / "static"
SELECTION_FIELDS = ("group", "fingerprint", "error_class", "since", "until", "refs", "ids")
SECURITY_HEADERS = {
    # Scripts only from the console itself: an injected <script> in a payload cannot run.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Dead letters carry customer data: no copies in browser or proxy caches.
    "Cache-Control": "no-store",
}


class NotSignedInError(Exception):
    """The request has no live session."""


@dataclass(slots=True)
class Console:
    """What every request shares: settings, the dead-letter view, sessions, replays, a producer."""

    settings: HubSettings
    config: ConsoleSettings
    index: LetterIndex
    sessions: Sessions
    sink: KafkaSink
    runs: Runs
    templates: Environment
    registry: Registry

    def ops(self, session: Session, reason: str = "") -> Ops:
        """The operations session of the signed-in person: every audit event carries their name."""
        return Ops(self.settings, actor=session.name, reason=reason, sink=self.sink)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("hub.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda at: (
        at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"
    )
    env.filters["short"] = lambda text, n=120: text if len(text) <= n else text[: n - 1] + "…"
    env.filters["tojson_pretty"] = lambda data: json.dumps(data, indent=2, ensure_ascii=False)
    env.globals["query"] = lambda **params: urlencode(
        {name: value for name, value in params.items() if value not in (None, "")}
    )
    env.globals["trend_buckets"] = TREND_BUCKETS
    return env


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _session(request: Request) -> Session:
    session = _console(request).sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotSignedInError
    return session


router = APIRouter()
ConsoleDep = Annotated[Console, Depends(_console)]
SessionDep = Annotated[Session, Depends(_session)]


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the console's forms are small: no multipart parser needed)."""
    body = (await request.body()).decode(errors="replace")
    return {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}


FormDep = Annotated[dict[str, str], Depends(_form)]


def _check_csrf(session: Session, form: Mapping[str, str]) -> None:
    if not same_token(form.get("csrf"), session.csrf):
        raise HTTPException(403, "The form's CSRF token is missing or wrong: reload the page.")


def _check_operator(session: Session) -> None:
    if not session.may_act:
        raise HTTPException(403, f"{session.name} has the viewer role: operators only.")


def _acting(session: Session, form: Mapping[str, str]) -> None:
    """An action that changes something: the operator role and a valid CSRF token."""
    _check_csrf(session, form)
    _check_operator(session)


def _selection(params: Mapping[str, str]) -> Selection:
    """A selection from form or query fields, as `hub dlq replay` takes it from options."""
    try:
        refs = frozenset(Ref.parse(t.strip()) for t in params.get("refs", "").split(",") if t)
        return Selection(
            group=params.get("group") or None,
            refs=refs,
            ids=frozenset(t.strip() for t in params.get("ids", "").split(",") if t.strip()),
            fingerprint=params.get("fingerprint") or None,
            error_class=params.get("error_class") or None,
            since=parse_time(params.get("since")),
            until=parse_time(params.get("until")),
        )
    except ValueError as error:
        raise HTTPException(400, str(error)) from error


def _number(params: Mapping[str, str], name: str, default: float | None) -> float | None:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError as error:
        raise HTTPException(400, f"{name} is not a number: {text!r}") from error


def _page_of(items: Sequence[T], page: int, size: int) -> tuple[Sequence[T], dict[str, int]]:
    pages = max(1, -(-len(items) // size))
    page = min(max(1, page), pages)
    return items[(page - 1) * size : page * size], {
        "page": page,
        "pages": pages,
        "total": len(items),
    }


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() else 1


def _render(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status_code: int = 200,
    **context: Any,  # noqa: ANN401 - template context
) -> HTMLResponse:
    console = _console(request)
    snapshot = console.index.snapshot
    html = console.templates.get_template(template).render(
        session=session,
        path=request.url.path,
        indexed=len(snapshot.letters),
        caught_up=snapshot.caught_up,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def _progress(
    console: Console, checkpoint: Checkpoint, state: str, error: str | None
) -> dict[str, Any]:
    group = checkpoint.selection.get("group")
    snapshot = console.index.snapshot
    lag = snapshot.lags.get(group) if group else None
    # The lag is read by the index; only a reading begun after the run's last chunk counts.
    settled = (
        checkpoint.done
        and lag is not None
        and lag.lag == 0
        and snapshot.lags_at is not None
        and snapshot.lags_at > checkpoint.updated_at
    )
    return {
        "settled": settled,
        "replay_id": checkpoint.replay_id,
        "state": state,
        "error": error,
        "actor": checkpoint.actor,
        "group": group,
        "rate": checkpoint.rate,
        "sent": checkpoint.sent,
        "parked": checkpoint.parked,
        "superseded": checkpoint.superseded,
        "already_parked": checkpoint.already_parked,
        "scanned": checkpoint.scanned,
        "total": checkpoint.scanned + checkpoint.remaining,
        "done": checkpoint.done,
        "replay_topic_end": lag.end if lag else None,
        "replay_topic_committed": lag.committed if lag else None,
        "replay_topic_lag": lag.lag if lag else None,
    }


def create_app(
    settings: HubSettings, config: ConsoleSettings, *, registry: Registry | None = None
) -> FastAPI:
    """The console over `settings`' cluster; sign-in and roles from `config`.

    `registry` holds the models payloads are checked against: today's catalogue by default.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sink = KafkaSink(settings, client_id="hub-console")
        index = LetterIndex(settings)
        console = Console(
            settings=settings,
            config=config,
            index=index,
            sessions=Sessions(ttl_s=config.session_ttl_s),
            sink=sink,
            runs=Runs(settings, sink),
            templates=_templates(),
            registry=registry or default_registry(),
        )
        app.state.console = console
        await sink.start()
        await index.start()
        stop = asyncio.Event()
        follower = asyncio.create_task(index.follow(config.refresh_s, stop), name="dlq-index")
        log.info("console_started", operators=len(config.operators))
        try:
            yield
        finally:
            await console.runs.close()
            stop.set()
            await follower
            await index.stop()
            await sink.stop()
            log.info("console_stopped")

    app = FastAPI(
        title="hub console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.middleware("http")
    async def headers_and_timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers.update(SECURITY_HEADERS)
        response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
        log.debug(
            "console_request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            ms=round(elapsed_ms, 1),
        )
        return response

    @app.exception_handler(NotSignedInError)
    async def not_signed_in(request: Request, _: NotSignedInError) -> Response:
        if request.method == "GET" and not request.url.path.endswith(".json"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return JSONResponse({"detail": "sign in first"}, status_code=401)

    # Starlette's class: unknown paths (404) and wrong methods (405) raise it, not FastAPI's.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        session = _console(request).sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None and request.url.path != "/login":
            return await not_signed_in(request, NotSignedInError())  # not even a 404 page
        return _render(
            request, "error.html", session, status_code=error.status_code, message=error.detail
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> Response:
        session = _console(request).sessions.get(request.cookies.get(SESSION_COOKIE))
        return _render(request, "error.html", session, status_code=404, message=str(error))

    app.include_router(router)
    return app


# --- signing in -----------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, console: ConsoleDep) -> Response:
    """The sign-in form."""
    # Login CSRF: the form must come back with the token of the cookie set here. An existing
    # token is kept: a second tab (or the browser's favicon request, redirected here) must not
    # invalidate the form already shown.
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = _render(
        request, "login.html", None, token=token, next=request.query_params.get("next", "/")
    )
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=console.config.secure_cookies
    )
    return response


@router.post("/login")
async def login(request: Request, console: ConsoleDep, form: FormDep) -> Response:
    """Check the name and password; open a session."""
    if not same_token(form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")):
        raise HTTPException(403, "The sign-in form expired: reload the page.")
    name = form.get("name", "")
    # scrypt is deliberately slow: keep it off the event loop.
    role = await asyncio.to_thread(
        authenticate, console.config.operators, name, form.get("password", "")
    )
    if role is None:
        log.warning("console_sign_in_refused", name=name)
        token = secrets.token_urlsafe(32)
        response = _render(
            request,
            "login.html",
            None,
            status_code=401,
            token=token,
            next=form.get("next", "/"),
            error="Wrong name or password.",
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=console.config.secure_cookies,
        )
        return response
    session = console.sessions.open(name, role)
    log.info("console_signed_in", name=name, role=role)
    target = form.get("next", "/")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        target = "/"  # never redirect off the console
    redirect = RedirectResponse(target, status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=console.config.secure_cookies,
        max_age=int(console.config.session_ttl_s),
    )
    redirect.delete_cookie(LOGIN_COOKIE)
    return redirect


@router.post("/logout")
async def logout(console: ConsoleDep, session: SessionDep, form: FormDep) -> Response:
    """Close the session."""
    _check_csrf(session, form)
    console.sessions.close(session.token)
    log.info("console_signed_out", name=session.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/static/console.js")
async def script(session: SessionDep) -> Response:
    """The console's one script: live replay progress."""
    del session  # served only to a signed-in browser, like everything else
    return Response((STATIC / "console.js").read_bytes(), media_type="text/javascript")


# --- views ----------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Per consumer group: dead letters, oldest, parked, replays running, lag, 24-hour trend."""
    snapshot = console.index.snapshot
    running: dict[str, int] = {}
    for run in console.runs.running():
        group = run.checkpoint.selection.get("group", "(all)")
        running[group] = running.get(group, 0) + 1
    trend = snapshot.trend()
    return _render(
        request,
        "overview.html",
        session,
        summaries=snapshot.summaries(),
        parked=snapshot.parked,
        lags=snapshot.lags,
        running=running,
        trend={group: (row, max(row) or 1) for group, row in trend.items()},
        refreshed_at=snapshot.refreshed_at,
    )


@router.get("/groups")
async def groups(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Failures grouped by fingerprint, largest first, paged."""
    group = request.query_params.get("group") or None
    found = console.index.snapshot.groups(group)
    rows, paging = _page_of(found, _page_number(request), console.config.page_size)
    return _render(request, "groups.html", session, rows=rows, paging=paging, group=group)


@router.get("/letters")
async def letters(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The dead letters a selection takes, paged."""
    params = dict(request.query_params)
    selection = _selection(params)
    found = console.index.snapshot.selected(selection)
    rows, paging = _page_of(found, _page_number(request), console.config.page_size)
    criteria = {name: params.get(name, "") for name in SELECTION_FIELDS}
    return _render(request, "letters.html", session, rows=rows, paging=paging, criteria=criteria)


@router.get("/letter")
async def letter(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """One dead letter: every header, the payload checked against today's models (audited)."""
    reference = request.query_params.get("ref", "")
    async with console.ops(session) as ops:
        shown = await ops.show(reference, console.registry)
    record = shown.letter.record
    return _render(
        request,
        "letter.html",
        session,
        shown=shown,
        letter=shown.letter,
        headers=[(name, value.decode(errors="replace")) for name, value in record.headers],
        payload=shown.event.model_dump(mode="json") if shown.event is not None else None,
        payload_type=type(shown.event).ce_type() if shown.event is not None else None,
        raw=(record.value or b"")[:20_000].decode(errors="replace"),
    )


@router.get("/case")
async def case(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """A case's timeline as the tracker last published it."""
    from tracker.snapshots import read_snapshots  # noqa: PLC0415 - imports every model

    case_id = request.query_params.get("id", "")
    snapshot = None
    # Without the tracker's topic the reader would wait for partitions that never come.
    if CASE_STATUS in console.index.snapshot.topics:
        snapshot = (await read_snapshots(console.settings, timeout_s=5.0)).get(case_id)
    return _render(request, "case.html", session, case_id=case_id, snapshot=snapshot)


@router.get("/audit")
async def audit(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The audit trail, newest first, filtered and paged."""
    params = dict(request.query_params)
    filters = {
        "group": params.get("group", ""),
        "actor": params.get("actor", ""),
        "action": params.get("action", ""),
        "since": params.get("since", "24h"),
    }
    try:
        since = parse_time(filters["since"])
    except ValueError as error:
        raise HTTPException(400, str(error)) from error
    async with console.ops(session) as ops:
        events = await ops.trail(group=filters["group"] or None, since=since)
    chosen = [
        event
        for event in reversed(events)  # the newest first
        if (not filters["actor"] or event.actor == filters["actor"])
        and (not filters["action"] or event.action == filters["action"])
    ]
    rows, paging = _page_of(chosen, _page_number(request), console.config.page_size)
    return _render(request, "audit.html", session, rows=rows, paging=paging, filters=filters)


# --- dry-run and replay -----------------------------------------------------------------


@router.get("/dry-run")
async def dry_run_form(request: Request, session: SessionDep) -> Response:
    """The dry-run form for a selection."""
    criteria = {name: request.query_params.get(name, "") for name in SELECTION_FIELDS}
    return _render(request, "dryrun.html", session, criteria=criteria, result=None)


@router.post("/dry-run")
async def dry_run(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """What replaying the selection would do; sends nothing but the audit event."""
    _check_csrf(session, form)  # a dry run sends nothing: viewers may run one too
    selection = _selection(form)
    max_replays = int(_number(form, "max_replays", DEFAULT_MAX_REPLAYS) or 0)
    async with console.ops(session, form.get("reason", "")) as ops:
        predictions = await ops.dry_run_with_handler(
            selection, registry=console.registry, max_replays=max_replays
        )
    counts: dict[str, int] = {}
    for prediction in predictions:
        counts[prediction.verdict] = counts.get(prediction.verdict, 0) + 1
    criteria = {name: form.get(name, "") for name in SELECTION_FIELDS}
    return _render(
        request,
        "dryrun.html",
        session,
        criteria=criteria,
        result={
            "counts": dict(sorted(counts.items())),
            "total": len(predictions),
            "rows": predictions[: console.config.dry_run_rows],
            "max_replays": max_replays,
        },
    )


@router.post("/replays")
async def start_replay(console: ConsoleDep, session: SessionDep, form: FormDep) -> Response:
    """Plan a replay of the selection and run it in the background."""
    _acting(session, form)
    selection = _selection(form)
    rate = _number(form, "rate", None)
    max_replays = int(_number(form, "max_replays", DEFAULT_MAX_REPLAYS) or 0)
    reason = form.get("reason", "")
    async with console.ops(session, reason) as ops:
        checkpoint = await ops.plan_replay(
            selection, max_replays=max_replays, rate=rate if rate and rate > 0 else None
        )
    console.runs.start(checkpoint, actor=session.name, reason=reason)
    return RedirectResponse(f"/replays/{checkpoint.replay_id}", status_code=303)


@router.get("/replays")
async def replays(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Replay runs saved under the state directory, with their state."""
    rows = []
    for checkpoint in saved_checkpoints(Path(console.settings.state_dir)):
        run = console.runs.get(checkpoint.replay_id)
        state = run.state if run else "done" if checkpoint.done else "stopped"
        latest = run.checkpoint if run else checkpoint
        rows.append(_progress(console, latest, state, run.error if run else None))
    return _render(request, "replays.html", session, rows=rows)


def _checkpoint(console: Console, replay_id: str) -> tuple[Checkpoint, str, str | None]:
    run = console.runs.get(replay_id)
    if run is not None:
        return run.checkpoint, run.state, run.error
    try:
        checkpoint = Ops(console.settings, actor="-").load_replay(replay_id)
    except (FileNotFoundError, ValueError) as error:
        raise HTTPException(404, f"no replay {replay_id}") from error
    return checkpoint, "done" if checkpoint.done else "stopped", None


@router.get("/replays/{replay_id}")
async def replay_page(
    request: Request, replay_id: str, console: ConsoleDep, session: SessionDep
) -> Response:
    """One replay run with its live progress."""
    checkpoint, state, error = _checkpoint(console, replay_id)
    return _render(
        request,
        "replay.html",
        session,
        progress=_progress(console, checkpoint, state, error),
        selection=checkpoint.selection,
    )


@router.get("/replays/{replay_id}/progress.json")
async def replay_progress(replay_id: str, console: ConsoleDep, session: SessionDep) -> Response:
    """One replay run's progress as JSON, for the page's polling."""
    del session  # signed in is enough to watch
    checkpoint, state, error = _checkpoint(console, replay_id)
    return JSONResponse(_progress(console, checkpoint, state, error))


@router.post("/replays/{replay_id}/stop")
async def stop_replay(
    replay_id: str, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """Stop a running replay at its next chunk boundary (resumable)."""
    _acting(session, form)
    run = console.runs.get(replay_id)
    if run is None or not run.running:
        raise HTTPException(409, f"replay {replay_id} is not running here")
    run.stop.set()
    log.info("console_replay_stop_asked", replay_id=replay_id, by=session.name)
    if run.task is not None:
        # The run ends at its next chunk boundary: show the page once it has, with Resume.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run.task), timeout=STOP_WAIT_S)
    return RedirectResponse(f"/replays/{replay_id}", status_code=303)


@router.post("/replays/{replay_id}/resume")
async def resume_replay(
    replay_id: str, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """Resume a stopped or failed replay from its checkpoint."""
    _acting(session, form)
    checkpoint, state, _ = _checkpoint(console, replay_id)
    if state in {"running", "done"}:
        raise HTTPException(409, f"replay {replay_id} is {state}")
    try:
        console.runs.start(checkpoint, actor=session.name, reason=form.get("reason", ""))
    except ValueError as error:
        raise HTTPException(409, str(error)) from error
    return RedirectResponse(f"/replays/{replay_id}", status_code=303)


# --- edit and purge ---------------------------------------------------------------------


@router.get("/edit")
async def edit_form(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """The payload of one dead letter, to edit."""
    _check_operator(session)
    reference = request.query_params.get("ref", "")
    async with console.ops(session) as ops:
        shown = await ops.show(reference, console.registry)
    raw = (shown.letter.record.value or b"").decode(errors="replace")
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        text = raw
    return _render(request, "edit.html", session, ref=str(shown.letter.ref), text=text, reason="")


async def _prepared(
    console: Console, session: Session, form: Mapping[str, str]
) -> tuple[Edited | None, str | None]:
    try:
        payload = json.loads(form.get("payload", ""))
    except json.JSONDecodeError as error:
        return None, f"the payload is not JSON: {error}"
    if not isinstance(payload, dict):
        return None, "the payload must be a JSON object"
    try:
        async with console.ops(session) as ops:
            edited = await ops.prepare_edit(
                form.get("ref", ""), registry=console.registry, payload=payload
            )
    except (ValueError, TypeError, PermanentError) as error:
        return None, f"{type(error).__name__}: {error}"
    return edited, None


@router.post("/edit/preview")
async def edit_preview(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """The edited copy validated and its field-by-field diff; nothing is sent."""
    _acting(session, form)
    edited, problem = await _prepared(console, session, form)
    return _render(
        request,
        "edit.html",
        session,
        status_code=422 if problem else 200,
        ref=form.get("ref", ""),
        text=form.get("payload", ""),
        reason=form.get("reason", ""),
        problem=problem,
        changes=edited.changes if edited else None,
    )


@router.post("/edit")
async def edit(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """Send the previewed copy to the group's replay topic."""
    _acting(session, form)
    edited, problem = await _prepared(console, session, form)
    if edited is None:
        raise HTTPException(422, f"refused, nothing sent: {problem}")
    async with console.ops(session, form.get("reason", "")) as ops:
        sent = await ops.edit(
            form.get("ref", ""),
            registry=console.registry,
            payload=json.loads(form["payload"]),
        )
    return _render(request, "edited.html", session, edited=sent)


def _plan_rows(plan: Mapping[TopicPartition, tuple[int, int]]) -> list[dict[str, Any]]:
    return [
        {"partition": partition_key(tp), "first": first, "upto": upto, "count": upto - first}
        for tp, (first, upto) in sorted(plan.items())
    ]


@router.get("/purge")
async def purge_form(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """What purging a dead-letter topic would delete, behind a typed confirmation."""
    _check_operator(session)
    topic = request.query_params.get("topic", "")
    try:
        async with console.ops(session) as ops:
            plan = await ops.purge_plan(topic)
    except ValueError as error:
        raise HTTPException(400, str(error)) from error
    rows = _plan_rows(plan)
    return _render(
        request,
        "purge.html",
        session,
        topic=topic,
        rows=rows,
        count=sum(row["count"] for row in rows),
        upto=",".join(f"{row['partition']}<{row['upto']}" for row in rows),
        deleted=None,
    )


@router.post("/purge")
async def purge(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """Delete what the form showed, once the topic name was typed."""
    _acting(session, form)
    topic = form.get("topic", "")
    if form.get("confirm", "").strip() != topic:
        raise HTTPException(400, f"Type the topic name {topic!r} exactly to purge it.")
    # Delete no further than the page showed: letters that arrived since are kept.
    shown = {}
    for part in form.get("upto", "").split(","):
        if "<" in part:
            key, _, upto = part.partition("<")
            shown[key] = int(upto)
    async with console.ops(session, form.get("reason", "")) as ops:
        plan = await ops.purge_plan(topic)
        plan = {
            tp: (first, min(upto, shown[partition_key(tp)]))
            for tp, (first, upto) in plan.items()
            if partition_key(tp) in shown and min(upto, shown[partition_key(tp)]) > first
        }
        deleted = await ops.purge(plan)
    await console.index.refresh()
    return _render(
        request,
        "purge.html",
        session,
        topic=topic,
        rows=_plan_rows(plan),
        count=deleted,
        upto="",
        deleted=deleted,
    )
