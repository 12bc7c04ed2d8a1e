"""`hub run ingress`: the FastAPI app of the front door, and the process that serves it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hub.core.handler import Emit
from hub.core.lifecycle import AsyncResource
from hub.core.metrics import INGRESS_REQUESTS, registry_text
from hub.core.ops_http import PROMETHEUS_TEXT, READY_TIMEOUT_S
from hub.core.service import KafkaSink
from hub.core.store.base import EventId
from hub.core.store.factory import open_store
from ingress.admission import Admission
from ingress.auth import Tokens
from ingress.binding import read_event
from ingress.cases import CaseAnswer, CaseReader
from ingress.problems import PROBLEM_TYPE, Problem, ProblemBody
from ingress.settings import IngressSettings
from intake.domain import case_id_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from starlette.types import Receive, Scope, Send

    from hub.core.handler import Service
    from hub.core.outbound import RecordSink
    from hub.core.registry import Registry
    from hub.core.settings import HubSettings
    from hub.core.store.base import StateStore

log = structlog.get_logger(__name__)

INBOX_PURGE_EVERY_S = 3600.0
_READY_PROBE = EventId("urn:aftersales-hub:readyz", "readyz")
TITLE = "After-sales repair hub: HTTP front door"
DESCRIPTION = (
    "Platform backends post storefront events as CloudEvents 1.0 (HTTP binding, binary or "
    "structured mode) and read the status of cases. Every call carries `Authorization: Bearer "
    "<token>`; a token may post only the `ce_source` values it was issued for. An event is "
    "answered 202 once the broker has acknowledged it; the same (`ce_source`, `ce_id`) sent "
    "again is answered 202 with `duplicate: true` and is not written twice."
)


class Accepted(BaseModel):
    """The answer to an event that is on Kafka (now, or from an earlier request)."""

    id: str = Field(description="The event's `ce_id`.")
    source: str = Field(description="The event's `ce_source`.")
    duplicate: bool = Field(description="True when this (source, id) was accepted before.")
    case_id: str = Field(description="The case the event belongs to: `GET /cases/{case_id}`.")


def _problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(), problem.status, headers=problem.headers, media_type=PROBLEM_TYPE
    )


class Ingress(AsyncResource):
    """The front door's parts: tokens, the producer, the dedup store and the case reader."""

    def __init__(
        self,
        settings: HubSettings,
        service: Service,
        registry: Registry,
        config: IngressSettings | None = None,
        *,
        sink: RecordSink | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.registry = registry
        self.config = config or IngressSettings()
        self.tokens = Tokens(self.config.all_backends())
        state_dir = Path(settings.state_dir)
        # What was sent only saves a second record: intake's inbox drops a repeat that a
        # machine crash made the front door forget, so its commits need not wait for the disk
        # (an fsync's tail would sit in every answer).
        self.store = open_store(
            settings.database_url, default_path=state_dir / "ingress.db", durable=False
        )
        # SQLite: the tracker's own file; PostgreSQL: one database for every group.
        self._case_store: StateStore | None = None
        if settings.database_url is None:
            self._case_store = open_store(
                None, default_path=state_dir / f"{self.config.case_group}.db"
            )
        self.cases = CaseReader(self._case_store or self.store, self.config.case_group)
        self._own_sink: KafkaSink | None = None
        if sink is None:
            sink = self._own_sink = KafkaSink(settings, client_id=f"hub-{service.group}")
        self.sink: RecordSink = sink
        self.admission = Admission(self.store, self.sink, service.group)
        self._purging: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the stores and connect the producer; what opened is closed if one fails."""
        try:
            await self.store.open()
            if self._case_store is not None:
                await self._case_store.open()
            if self._own_sink is not None:
                await self._own_sink.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise
        self._purging = asyncio.create_task(self._purge_periodically())
        if not len(self.tokens):
            log.warning("ingress_without_backends", hint="set HUB_INGRESS_BACKENDS")
        log.info("ingress_started", backends=len(self.tokens))

    async def stop(self) -> None:
        """Finish writing records, disconnect, close the stores."""
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
            self._purging = None
        await self.admission.close()
        if self._own_sink is not None:
            await self._own_sink.stop()
        if self._case_store is not None:
            await self._case_store.close()
        await self.store.close()
        log.info("ingress_stopped")

    async def _purge_periodically(self) -> None:
        while True:
            try:
                cutoff = datetime.now(UTC) - self.settings.inbox_retention
                removed = await self.store.purge_inbox(self.service.group, cutoff)
                log.info("inbox_purged", group=self.service.group, removed=removed)
            except Exception:  # a busy database must not stop the front door; next round retries
                log.exception("inbox_purge_failed", group=self.service.group)
            await asyncio.sleep(INBOX_PURGE_EVERY_S)

    async def accept(
        self, authorization: str | None, headers: Mapping[str, str], body: bytes
    ) -> Accepted:
        """Authenticate, read, authorise and send one event; Problem when refused."""
        backend = self.tokens.authenticate(authorization)
        received = read_event(headers, body, registry=self.registry, accepted=self.service.emits)
        envelope = received.envelope
        self.tokens.check_source(backend, envelope.source)
        topic = self.service.topic_for(Emit("ingress", received.event))
        try:
            sent = await asyncio.wait_for(
                self.admission.admit(EventId(envelope.source, envelope.id), received.record(topic)),
                self.config.send_timeout_s,
            )
        except (KafkaError, TimeoutError) as error:
            log.warning("ingress_send_failed", error_class=type(error).__name__, error=str(error))
            raise Problem(
                503,
                "Service Unavailable",
                "the broker did not acknowledge the event; send it again with the same ce-id",
                headers={"Retry-After": "1"},
            ) from error
        except Exception as error:
            # The duplicate check could not be made (the state store is down): nothing was sent.
            log.exception("ingress_store_failed", error_class=type(error).__name__)
            raise Problem(
                503,
                "Service Unavailable",
                "the event could not be checked for duplicates; send it again with the same ce-id",
                headers={"Retry-After": "1"},
            ) from error
        # Debug, not info: at a thousand events a second the line cost a tenth of the CPU, and
        # the record on Kafka already carries who sent which id (ce_source, ce_id).
        log.debug(
            "ingress_event",
            backend=backend,
            source=envelope.source,
            event_id=envelope.id,
            type=envelope.type,
            duplicate=not sent,
        )
        return Accepted(
            id=envelope.id,
            source=envelope.source,
            duplicate=not sent,
            case_id=case_id_for(received.key),
        )

    async def readiness(self) -> dict[str, bool]:
        """Store answering, broker reachable: what /readyz reports."""
        try:
            await self.store.is_processed(self.service.group, _READY_PROBE)
            store = True
        except Exception:  # noqa: BLE001 - any failure means not ready; the store logs its own
            store = False
        broker = await self.sink.ping() if isinstance(self.sink, KafkaSink) else True
        return {"store": store, "broker": broker}


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemBody, "description": text}
    for status, text in (
        (400, "Not a valid CloudEvent of an accepted type; `errors` names each field."),
        (401, "No bearer token."),
        (403, "The token is not valid, or may not send this `ce_source`."),
        (413, "The body is too large."),
        (415, "Neither application/json (binary mode) nor application/cloudevents+json."),
        (503, "The broker did not acknowledge: send again with the same `ce-id`."),
    )
}
_BINARY_HEADERS = [
    {
        "name": f"ce-{name}",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": text,
    }
    for name, text in (
        ("specversion", "Binary mode: `1.0`."),
        ("id", "Binary mode: unique per source; the same id is never written twice."),
        ("source", "Binary mode: a source your token may send, e.g. urn:storefront:shop."),
        ("type", "Binary mode: e.g. storefront.aftersales.requested.v2."),
        ("time", "Binary mode: RFC 3339 with a time zone."),
        ("subject", "Optional: defaults to the request id."),
        ("dataschema", "Optional: the schema's URN with its minor version."),
        ("correlationid", "Optional extension."),
        ("causationid", "Optional extension."),
    )
]


def _request_body(service: Service, registry: Registry) -> dict[str, Any]:
    """The OpenAPI request body: each accepted family's data, bare or in a structured event."""
    refs = [
        {"$ref": f"#/components/schemas/{model.__name__}"}
        for family in service.emits
        for model in registry.families()[family]
    ]
    structured = {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string"},
            "source": {"type": "string"},
            "type": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "datacontenttype": {"const": "application/json"},
            "data": {"oneOf": refs},
        },
    }
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": refs}},
            "application/cloudevents+json": {"schema": structured},
        },
    }


async def _body(chunks: AsyncIterator[bytes], headers: Headers, limit: int) -> bytes:
    """The request body; a 413 as soon as it is known to be over `limit` (never read whole)."""
    too_large = Problem(413, "Content Too Large", f"the body is over {limit} B")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


async def answer_event(
    ingress: Ingress, headers: Headers, chunks: AsyncIterator[bytes]
) -> Response:
    """`POST /events`: the 202 of an event on the broker, or the problem that refused it."""
    started = time.perf_counter()
    status = 202
    try:
        body = await _body(chunks, headers, ingress.config.max_body_bytes)
        accepted = await ingress.accept(headers.get("authorization"), headers, body)
        # A response, not the model: FastAPI would validate and encode it once more.
        return Response(accepted.model_dump_json(), 202, media_type="application/json")
    except Problem as problem:
        status = problem.status
        return _problem_response(problem)
    except ClientDisconnect:
        status = 499  # nginx's "client closed request": counted, not answered
        raise
    finally:
        INGRESS_REQUESTS.labels("events", str(status)).observe(time.perf_counter() - started)


async def _received_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """A request body as ASGI delivers it; ClientDisconnect when the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class FrontDoor:
    """The ASGI app served: `POST /events` straight to the ingress, the rest through FastAPI.

    FastAPI's middleware, routing and request objects cost about a third of an event's CPU; the
    one hot route skips them. FastAPI still documents it and answers it the same way (one
    `answer_event`) when called directly.
    """

    def __init__(self, app: FastAPI, ingress: Ingress) -> None:
        self.app = app
        self._ingress = ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http" or scope["path"] != "/events" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            response = await answer_event(
                self._ingress, Headers(scope=scope), _received_chunks(receive)
            )
        except ClientDisconnect:
            return  # gone before its body was whole: nothing was sent, nobody to answer
        await response(scope, receive, send)


def build_app(ingress: Ingress, *, manage: bool = True) -> FastAPI:
    """The front door's app; `manage` starts and stops `ingress` with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await ingress.start()
        try:
            yield
        finally:
            if manage:
                await ingress.stop()

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.ingress = ingress

    @app.exception_handler(StarletteHTTPException)
    async def refused(_request: Request, error: Exception) -> JSONResponse:
        # Starlette's own refusals (413, 404, 405) as problem details, like ours.
        assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for it only
        title = HTTPStatus(error.status_code).phrase
        return _problem_response(Problem(error.status_code, title, str(error.detail)))

    @app.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        responses=_PROBLEMS,
        summary="Send one storefront event (CloudEvents HTTP binding)",
        openapi_extra={
            "parameters": _BINARY_HEADERS,
            "requestBody": _request_body(ingress.service, ingress.registry),
        },
    )
    async def post_event(request: Request) -> Response:
        return await answer_event(ingress, request.headers, request.stream())

    _case_route(app, ingress)
    _ops_routes(app, ingress)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, ingress.registry, ingress.service)
        return app.openapi_schema

    # FastAPI's documented way to extend the generated document.
    app.openapi = openapi  # type: ignore[method-assign]
    return app


def openapi_document(app: FastAPI, registry: Registry, service: Service) -> dict[str, Any]:
    """The app's OpenAPI document, with the schemas of the accepted event data."""
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for family in service.emits:
        for model in registry.families()[family]:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas |= schema.pop("$defs", {})
            schemas[model.__name__] = schema
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    # The token is read from the header directly (a dependency per request costs more than
    # the check itself); the document says so as a security scheme.
    document["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token `hub ingress new-token` made for your backend.",
        }
    }
    document["security"] = [{"bearer": []}]
    return document


def render_openapi(settings: HubSettings, registry: Registry) -> str:
    """The OpenAPI document as committed in docs/: indented JSON, from the declaration."""
    from hub.bootstrap import Adapter, declarations  # noqa: PLC0415 - the bootstrap imports us

    (declared,) = [d for d in declarations(settings) if d.adapter is Adapter.HTTP_INGRESS]
    ingress = Ingress(settings, declared.service, registry, IngressSettings(backends={}))
    document = build_app(ingress, manage=False).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


class _Server(uvicorn.Server):
    """uvicorn's server; SIGTERM and SIGINT stop it gracefully and the process exits 0.

    uvicorn raises a caught signal again after its shutdown, so the process would end killed by
    SIGTERM; `hub run` processes end with 0 after a drain, and supervisors read it so.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self.handle_exit, number, None)
        try:
            yield
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)


def _listening_socket(host: str, port: int) -> socket.socket:
    """The front door's socket, which every `hub run ingress` on this host and port may share.

    With SO_REUSEPORT the kernel spreads new connections over the processes listening on one
    port: more processes on one machine serve more requests, as more replicas do across pods.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listening.bind((host, port))
    return listening


class IngressRuntime:
    """`hub run ingress`: the app under uvicorn until SIGTERM or Ctrl-C."""

    def __init__(self, settings: HubSettings, service: Service, registry: Registry) -> None:
        self.config = IngressSettings()
        self.ingress = Ingress(settings, service, registry, self.config)
        # Started here, not in the app's lifespan: uvicorn turns a failed start into its own
        # exit, and `hub run` says an unreachable broker or store with its documented code.
        self.app = FrontDoor(build_app(self.ingress, manage=False), self.ingress)

    async def serve(self) -> None:
        """Connect, serve until a signal (uvicorn drains open requests), then close."""
        config = uvicorn.Config(
            self.app,
            host=self.config.host,
            port=self.config.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_keep_alive=int(self.config.keep_alive_s),
        )
        await self.ingress.start()
        try:
            log.info(
                "http_serving",
                host=self.config.host,
                port=self.config.port,
                paths=["/events", "/cases/{case_id}", "/metrics", "/healthz", "/readyz"],
            )
            await _Server(config).serve(
                sockets=[_listening_socket(self.config.host, self.config.port)]
            )
        finally:
            await self.ingress.stop()


def _case_route(app: FastAPI, ingress: Ingress) -> None:
    """GET /cases/{case_id}."""

    @app.get(
        "/cases/{case_id}",
        response_model=CaseAnswer,
        responses={
            404: {"model": ProblemBody, "description": "No such case (yet)."},
            **{s: _PROBLEMS[s] for s in (401, 403)},
        },
        summary="A case's status and timeline",
    )
    async def get_case(case_id: str, request: Request) -> CaseAnswer | JSONResponse:
        started = time.perf_counter()
        status = 200
        try:
            ingress.tokens.authenticate(request.headers.get("authorization"))
            case = await ingress.cases.case(case_id)
        except Problem as problem:
            status = problem.status
            return _problem_response(problem)
        else:
            if case is None:
                status = 404
                return _problem_response(Problem(404, "Not Found", f"no case {case_id!r} (yet)"))
            return case
        finally:
            INGRESS_REQUESTS.labels("cases", str(status)).observe(time.perf_counter() - started)


def _ops_routes(app: FastAPI, ingress: Ingress) -> None:
    """/healthz, /readyz and /metrics, as every `hub run` process serves them."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            checks = await asyncio.wait_for(ingress.readiness(), READY_TIMEOUT_S)
        except TimeoutError:
            checks = {"timeout": False}
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(registry_text(), headers={"Content-Type": PROMETHEUS_TEXT})
