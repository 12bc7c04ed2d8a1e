"""The HTTP front door over a fake producer: tokens, the HTTP binding, dedup and its race."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client import REGISTRY

from hub.core.settings import HubSettings
from hub.core.store.base import EventId
from hub.core.store.sqlite import SqliteStateStore
from hub.messages import CATALOGUE
from ingress.admission import Admission
from ingress.app import FrontDoor, Ingress, build_app, render_openapi
from ingress.auth import token_digest
from ingress.service import declare_ingress
from ingress.settings import Backend, IngressSettings
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from hub.core.outbound import OutRecord

ROOT = Path(__file__).resolve().parents[2]
TOKEN, SOURCE = "token-of-shop", "urn:storefront:shop"
TIME = "2026-12-01T08:00:00+00:00"


class SlowSink:
    """Collects records; each send takes a little while, as a broker's acknowledgement does."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send(self, records: Sequence[OutRecord]) -> None:
        await asyncio.sleep(0.01)
        self.records.extend(records)


@pytest.fixture(params=["front door", "fastapi route"])
async def front(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, SlowSink]]:
    """The app as served (POST /events skips FastAPI), and FastAPI's own route: one behaviour."""
    settings = HubSettings(state_dir=str(tmp_path))
    config = IngressSettings(
        backends={"shop": Backend(token_sha256=token_digest(TOKEN), sources=(SOURCE,))}
    )
    sink = SlowSink()
    ingress = Ingress(settings, declare_ingress(settings), CATALOGUE, config, sink=sink)
    await ingress.start()
    app = build_app(ingress, manage=False)
    served = FrontDoor(app, ingress) if request.param == "front door" else app
    transport = httpx.ASGITransport(app=served)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield client, sink
    finally:
        await ingress.stop()


def binary(event_id: str, **overrides: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {TOKEN}",
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": SOURCE,
        "ce-type": "storefront.aftersales.requested.v2",
        "ce-time": TIME,
        **overrides,
    }


def data(number: int = 1, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample_request_v2(number).to_bytes())
    body.update(changes)
    return body


async def test_a_binary_event_is_produced_with_its_attributes_as_ce_headers(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    headers = binary("evt-1", **{"ce-correlationid": "corr%201"})
    body = data()
    answer = await client.post("/events", headers=headers, json=body)
    assert answer.status_code == 202
    assert answer.json() == {
        "id": "evt-1",
        "source": SOURCE,
        "duplicate": False,
        "case_id": answer.json()["case_id"],
    }
    (record,) = sink.records
    sent = dict(record.headers)
    assert record.topic == "storefront.aftersales.requests"
    assert record.key == b"RQ-00000001"
    assert sent["ce_id"] == b"evt-1"
    assert sent["ce_source"] == SOURCE.encode()
    assert sent["ce_subject"] == b"RQ-00000001"
    assert sent["ce_correlationid"] == b"corr 1"  # percent-decoded, as the binding says
    assert sent["ce_dataschema"] == b"urn:aftersales-hub:schema:storefront.aftersales.requested:2.0"
    assert json.loads(record.value or b"") == body


async def test_a_structured_event_is_produced_in_binary_mode(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    body = data(2)
    event = {
        "specversion": "1.0",
        "id": "evt-s",
        "source": SOURCE,
        "type": "storefront.aftersales.requested.v2",
        "time": TIME,
        "data": body,
    }
    answer = await client.post(
        "/events",
        headers={
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/cloudevents+json",
        },
        content=json.dumps(event),
    )
    assert answer.status_code == 202, answer.text
    (record,) = sink.records
    assert dict(record.headers)["content-type"] == b"application/json"
    assert json.loads(record.value or b"") == body


async def test_a_structured_event_without_a_time_is_400_naming_it(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    event = {"specversion": "1.0", "id": "evt-t", "source": SOURCE,
             "type": "storefront.aftersales.requested.v2", "data": data(3)}  # fmt: skip
    answer = await client.post(
        "/events",
        headers={
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/cloudevents+json",
        },
        content=json.dumps(event),
    )
    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == ["time"]
    assert sink.records == []


async def test_invalid_data_is_400_naming_each_field(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    body = data(item={"sku": "x"})
    del body["customer"]
    answer = await client.post("/events", headers=binary("evt-bad"), json=body)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    fields = {error["field"] for error in answer.json()["errors"]}
    assert {"customer", "item.category"} <= fields
    assert sink.records == []


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"ce-time": ""}, "ce-time", "missing CloudEvents headers: ce-time"),
        ({"ce-time": "yesterday"}, "ce-time", "ce-time is not RFC 3339"),
        ({"ce-type": "storefront.aftersales.requested.v9"}, "ce-type", "unknown version"),
        ({"ce-type": "aftersales.case.opened.v1"}, "ce-type", "is not sent here"),
    ],
)
async def test_a_bad_envelope_is_400_naming_the_attribute(
    front: tuple[httpx.AsyncClient, SlowSink], overrides: dict[str, str], field: str, text: str
) -> None:
    client, sink = front
    answer = await client.post("/events", headers=binary("evt-e", **overrides), json=data())
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["field"] == field
    assert text in f"{answer.json()['detail']} / {error['message']}"
    assert sink.records == []


async def test_no_token_is_401_a_wrong_one_or_a_foreign_source_403(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    missing = await client.post("/events", headers=binary("e", authorization=""), json=data())
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.post("/events", headers=binary("e", authorization="Bearer x"), json=data())
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "the token is not valid")
    foreign = await client.post(
        "/events", headers=binary("e", **{"ce-source": "urn:other"}), json=data()
    )
    assert foreign.status_code == 403
    assert "may not send events of ce_source 'urn:other'" in foreign.json()["detail"]
    case = await client.get("/cases/AS1")
    assert case.status_code == 401
    assert sink.records == []


async def test_a_repeated_event_is_202_again_and_produced_once_even_in_flight_together(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    answers = await asyncio.gather(
        *(client.post("/events", headers=binary("evt-twice"), json=data()) for _ in range(5))
    )
    assert [a.status_code for a in answers] == [202] * 5
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    again = await client.post("/events", headers=binary("evt-twice"), json=data())
    assert again.json()["duplicate"] is True
    # The same id from another source is another event.
    assert len(sink.records) == 1


async def test_a_failed_send_records_nothing_so_the_retry_sends(tmp_path: Path) -> None:
    class FailingOnce(SlowSink):
        failed = False

        async def send(self, records: Sequence[OutRecord]) -> None:
            if not self.failed:
                self.failed = True
                raise ConnectionError("broker gone")
            await super().send(records)

    store = SqliteStateStore(tmp_path / "ingress.db")
    await store.open()
    sink = FailingOnce()
    admission = Admission(store, sink, "ingress")
    event = EventId(SOURCE, "e1")
    record = sink_record()
    try:
        with pytest.raises(ConnectionError):
            await admission.admit(event, record)
        assert await admission.admit(event, record) is True
        assert await admission.admit(event, record) is False
        assert await store.is_processed("ingress", event)
    finally:
        await store.close()
    assert len(sink.records) == 1


async def test_the_answer_waits_for_the_ack_not_the_record_and_a_repeat_waits_for_both(
    tmp_path: Path,
) -> None:
    class HeldStore(SqliteStateStore):
        release = asyncio.Event()

        async def commit_batch(self, group: str, events: Any, states: Any, **kw: Any) -> Any:
            await self.release.wait()
            return await super().commit_batch(group, events, states, **kw)

    store = HeldStore(tmp_path / "ingress.db")
    await store.open()
    sink = SlowSink()
    admission = Admission(store, sink, "ingress")
    event = EventId(SOURCE, "e1")
    try:
        assert await asyncio.wait_for(admission.admit(event, sink_record()), 1) is True
        assert not await store.is_processed("ingress", event)
        repeat = asyncio.ensure_future(admission.admit(event, sink_record()))
        await asyncio.sleep(0.05)
        assert not repeat.done()  # held at the in-flight table while the record is written
        store.release.set()
        assert await asyncio.wait_for(repeat, 1) is False
        assert await store.is_processed("ingress", event)
    finally:
        await store.close()
    assert len(sink.records) == 1


async def test_requests_in_flight_together_ask_the_store_once(tmp_path: Path) -> None:
    class CountingStore(SqliteStateStore):
        reads = 0

        async def load_batch(self, group: str, events: Any, keys: Any) -> Any:
            self.reads += 1
            return await super().load_batch(group, events, keys)

    store = CountingStore(tmp_path / "ingress.db")
    await store.open()
    sink = SlowSink()
    admission = Admission(store, sink, "ingress")
    events = [EventId(SOURCE, f"e{n}") for n in range(20)]
    try:
        sent = await asyncio.gather(*(admission.admit(e, sink_record()) for e in events))
        assert sent == [True] * 20
        assert store.reads == 1
        await admission.close()
        assert [await store.is_processed("ingress", e) for e in events] == [True] * 20
    finally:
        await store.close()
    assert len(sink.records) == 20


def sink_record() -> OutRecord:
    from hub.core.outbound import OutRecord  # noqa: PLC0415

    return OutRecord("t", b"k", b"{}", ())


async def test_a_body_over_the_limit_is_413_as_problem_details(
    front: tuple[httpx.AsyncClient, SlowSink],
) -> None:
    client, sink = front
    huge = data(comment="x" * (1024 * 1024))
    answer = await client.post("/events", headers=binary("evt-huge"), json=huge)
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "the body is over 1048576 B"
    assert sink.records == []


async def test_a_store_outage_is_503_and_sends_nothing(
    front: tuple[httpx.AsyncClient, SlowSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, sink = front

    async def down(*_args: object) -> None:
        raise ConnectionError("database is down")

    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    ingress = (app.app if isinstance(app, FrontDoor) else app).state.ingress  # type: ignore[attr-defined]
    monkeypatch.setattr(ingress.store, "load_batch", down)
    answer = await client.post("/events", headers=binary("evt-down"), json=data())
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "same ce-id" in answer.json()["detail"]
    assert sink.records == []


async def test_an_unknown_case_is_404(front: tuple[httpx.AsyncClient, SlowSink]) -> None:
    client, _ = front
    answer = await client.get("/cases/AS404", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no case 'AS404' (yet)"
    nowhere = await client.get("/nowhere")
    assert (nowhere.status_code, nowhere.headers["content-type"]) == (
        404,
        "application/problem+json",
    )


def test_backends_are_read_from_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    entry = {"token_sha256": token_digest("t2"), "sources": ["urn:b"]}
    path.write_text(json.dumps({"b": entry}))
    config = IngressSettings(backends_file=path)
    assert config.all_backends()["b"].sources == ("urn:b",)
    path.write_text(json.dumps({"b": {"token_sha256": "not-hex", "sources": ["urn:b"]}}))
    with pytest.raises(ValueError, match="HUB_INGRESS_BACKENDS_FILE"):
        IngressSettings(backends_file=path).all_backends()


def test_the_committed_openapi_document_is_in_step_with_the_app() -> None:
    committed = (ROOT / "docs" / "openapi" / "ingress.json").read_text(encoding="utf-8")
    assert committed == render_openapi(HubSettings(), CATALOGUE), "run `hub ingress openapi`"
    document = json.loads(committed)
    assert set(document["paths"]) == {"/events", "/cases/{case_id}"}
    responses = document["paths"]["/events"]["post"]["responses"]
    assert {"202", "400", "401", "403", "503"} <= set(responses)
    assert "AfterSalesRequestedV2" in document["components"]["schemas"]
    validate(document)  # the OpenAPI 3.1 schema and every $ref, by openapi-spec-validator


async def test_a_client_gone_before_its_body_is_whole_is_counted_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    settings = HubSettings(state_dir=str(tmp_path))
    config = IngressSettings(
        backends={"shop": Backend(token_sha256=token_digest(TOKEN), sources=(SOURCE,))}
    )
    sink = SlowSink()
    ingress = Ingress(settings, declare_ingress(settings), CATALOGUE, config, sink=sink)
    door = FrontDoor(build_app(ingress, manage=False), ingress)
    headers = [(name.encode(), value.encode()) for name, value in binary("evt-gone").items()]
    scope = {"type": "http", "method": "POST", "path": "/events", "headers": headers}
    arriving: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"request_id": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    answered: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return arriving.pop(0)

    async def send(message: dict[str, Any]) -> None:
        answered.append(message)

    def gone() -> float:
        labels = {"route": "events", "status": "499"}
        return REGISTRY.get_sample_value("hub_ingress_request_seconds_count", labels) or 0.0

    before = gone()
    await ingress.start()
    try:
        await door(scope, receive, send)  # type: ignore[arg-type]
    finally:
        await ingress.stop()
    assert answered == []
    assert sink.records == []
    assert gone() == before + 1
