"""`hub run ingress` on the real broker: HTTP in, one record each, intake opens the case."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kafka_io import create_topics, read_records, settle_and_read

from hub.core.envelope import Envelope
from hub.core.service import ServiceRuntime
from hub.core.topics import (
    CASE_STATUS,
    CASES,
    NOTIFICATION_REQUESTS,
    STOREFRONT_REQUESTS,
    Subscription,
)
from hub.messages import CATALOGUE
from ingress.auth import token_digest
from intake.domain import case_id_for
from intake.service import build_service as build_intake
from lab.samples import sample_request_v2
from tracker.service import build_service as build_tracker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from hub.core.settings import HubSettings

pytestmark = pytest.mark.integration

TOKEN, SOURCE = "integration-token", "urn:storefront:it"
START_TIMEOUT_S = 60.0


@dataclass
class FrontDoor:
    url: str
    settings: HubSettings
    number: int

    def headers(self, event_id: str, **overrides: str) -> dict[str, str]:
        return {
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": SOURCE,
            "ce-type": "storefront.aftersales.requested.v2",
            "ce-time": "2026-12-01T08:00:00+00:00",
            **overrides,
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def wait_ready(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    async with httpx.AsyncClient() as client:
        while loop.time() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"hub run ingress exited: {tail(log)}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"hub run ingress was not ready: {tail(log)}")


@pytest.fixture
async def front_door(
    make_settings: Callable[..., HubSettings], unique: str, tmp_path: Path
) -> AsyncIterator[FrontDoor]:
    """Intake and the tracker in this process; `hub run ingress` in its own, on a free port."""
    settings = make_settings()
    intake = replace(build_intake(settings), group=f"intake-{unique}")
    tracker = build_tracker(settings, group=f"tracker-{unique}")
    await create_topics(
        settings,
        [Subscription(s.group, s.all_inputs) for s in (intake, tracker)],
        [CASE_STATUS, NOTIFICATION_REQUESTS],
    )
    port = free_port()
    backends = {"it": {"token_sha256": token_digest(TOKEN), "sources": [SOURCE]}}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "KAFKA_"))},
        "HUB_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HUB_STATE_DIR": settings.state_dir,
        "HUB_INGRESS_HOST": "127.0.0.1",
        "HUB_INGRESS_PORT": str(port),
        "HUB_INGRESS_BACKENDS": json.dumps(backends),
        "HUB_INGRESS_CASE_GROUP": tracker.group,
        "HUB_LOG_FORMAT": "json",
    }
    log = tmp_path / "ingress.log"
    hub = str(Path(sys.executable).with_name("hub"))
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            hub, "run", "ingress", env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    runtimes = [ServiceRuntime(s, settings, registry=CATALOGUE) for s in (intake, tracker)]
    try:
        await wait_ready(url, process, log)
        for runtime in runtimes:
            await runtime.start()
        yield FrontDoor(url, settings, int(unique[:6], 16))
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        for runtime in runtimes:
            await runtime.stop()
    assert process.returncode == 0, tail(log)


def data_of(number: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample_request_v2(number).to_bytes())
    return body


async def records_with_id(settings: HubSettings, event_id: str) -> list[Any]:
    everything = await settle_and_read(settings.kafka_bootstrap_servers, STOREFRONT_REQUESTS)
    return [r for r in everything if ("ce_id", event_id.encode()) in list(r.headers)]


async def test_binary_and_structured_events_reach_intake_once_each_and_a_repeat_adds_none(
    front_door: FrontDoor,
) -> None:
    binary_data, structured_data = data_of(front_door.number), data_of(front_door.number + 1)
    binary_id, structured_id = f"evt-b-{front_door.number}", f"evt-s-{front_door.number}"
    structured = {
        "specversion": "1.0",
        "id": structured_id,
        "source": SOURCE,
        "type": "storefront.aftersales.requested.v2",
        "time": "2026-12-01T08:00:00Z",
        "data": structured_data,
    }
    async with httpx.AsyncClient(base_url=front_door.url) as client:
        first = await client.post(
            "/events", headers=front_door.headers(binary_id), json=binary_data
        )
        second = await client.post(
            "/events",
            headers={
                "authorization": f"Bearer {TOKEN}",
                "content-type": "application/cloudevents+json",
            },
            content=json.dumps(structured),
        )
        repeat = await client.post(
            "/events", headers=front_door.headers(binary_id), json=binary_data
        )
    assert (first.status_code, second.status_code, repeat.status_code) == (202, 202, 202)
    assert (first.json()["duplicate"], repeat.json()["duplicate"]) == (False, True)
    assert first.json()["id"] == binary_id

    (on_topic,) = await records_with_id(front_door.settings, binary_id)
    assert on_topic.key == binary_data["request_id"].encode()
    assert Envelope.from_headers(on_topic.headers).source == SOURCE
    assert json.loads(on_topic.value or b"") == binary_data
    (structured_record,) = await records_with_id(front_door.settings, structured_id)
    assert Envelope.from_headers(structured_record.headers).type == structured["type"]

    cases = {case_id_for(binary_data["request_id"]), case_id_for(structured_data["request_id"])}
    assert first.json()["case_id"] in cases
    opened = await read_records(
        front_door.settings.kafka_bootstrap_servers,
        CASES,
        count=2,
        timeout_s=60,
        match=lambda r: (
            r.key is not None
            and r.key.decode() in cases
            and ("ce_type", b"aftersales.case.opened.v1") in list(r.headers)
        ),
    )
    assert {r.key.decode() for r in opened if r.key} == cases
    assert len(opened) == 2


async def test_refusals_over_http_name_what_is_wrong_and_produce_nothing(
    front_door: FrontDoor,
) -> None:
    body = data_of(front_door.number + 2)
    del body["address"]
    event_id = f"evt-r-{front_door.number}"
    async with httpx.AsyncClient(base_url=front_door.url) as client:
        invalid = await client.post("/events", headers=front_door.headers(event_id), json=body)
        anonymous = await client.post(
            "/events", headers=front_door.headers(event_id, authorization=""), json=body
        )
        wrong = await client.post(
            "/events", headers=front_door.headers(event_id, authorization="Bearer nope"), json=body
        )
        foreign = await client.post(
            "/events",
            headers=front_door.headers(event_id, **{"ce-source": "urn:someone-else"}),
            json=data_of(front_door.number + 2),
        )
    assert invalid.status_code == 400
    assert [e["field"] for e in invalid.json()["errors"]] == ["address"]
    assert (anonymous.status_code, wrong.status_code, foreign.status_code) == (401, 403, 403)
    assert await records_with_id(front_door.settings, event_id) == []


async def test_a_case_opened_through_the_front_door_shows_its_status_and_timeline(
    front_door: FrontDoor,
) -> None:
    body = data_of(front_door.number + 3)
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=front_door.url) as client:
        sent = await client.post(
            "/events", headers=front_door.headers(f"evt-c-{front_door.number}"), json=body
        )
        case_id = sent.json()["case_id"]
        assert case_id == case_id_for(body["request_id"])
        unknown = await client.get("/cases/AS-NO-SUCH-CASE", headers=auth)
        answer = await client.get(f"/cases/{case_id}", headers=auth)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while answer.status_code == 404 and loop.time() < deadline:
            await asyncio.sleep(0.3)
            answer = await client.get(f"/cases/{case_id}", headers=auth)
    assert unknown.status_code == 404
    assert answer.status_code == 200, answer.text
    case = answer.json()
    assert case["case_id"] == case_id
    assert case["request_type"] == body["request_type"]
    assert case["timeline"], case
    assert case["status"] == case["timeline"][-1]["status"]
