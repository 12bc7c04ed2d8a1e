"""The rendered Deployments run under `podman kube play`, from the image, against a real broker.

A storefront request is published; intake and dispatch, each in its own pod built from the
rendered Deployment, open the case and send the pickup order to a courier's topic. The pods
share the host's network, where the harness broker listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import structlog
import yaml
from kafka_io import read_records
from podman import exists, logs, podman, require_image

from hub.core.envelope import Envelope
from hub.core.outbound import event_record
from hub.core.service import KafkaSink
from hub.core.settings import HubSettings
from hub.core.topics import CASES, STOREFRONT_REQUESTS, courier_orders_topic
from intake.domain import case_id_for
from lab.harness.kafka import free_ports
from lab.samples import sample_request_v2

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiokafka.structs import ConsumerRecord

pytestmark = pytest.mark.containers
log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
GROUPS = ("intake", "dispatch")
COURIERS = ("sf", "jd", "yd")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def rendered(name: str) -> list[dict[str, Any]]:
    text = (K8S / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def pod_manifest(group: str, image: str, http_port: int) -> dict[str, Any]:
    """The rendered Deployment of `group`, fitted to one machine without a cluster.

    Changed, and only this: the local image; the host's network (the broker advertises
    127.0.0.1), so a port of its own for /healthz and no port list; no Kafka login (the
    harness broker is PLAINTEXT); no HTTP probes, which podman would run as `curl` inside the
    container (the test asks the endpoints itself, as the kubelet would).
    """
    (deployment,) = [
        d for d in rendered("deployments.yaml") if d["metadata"]["name"] == f"hub-{group}"
    ]
    spec = deployment["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    (container,) = spec["containers"]
    container["image"] = image
    del container["ports"]
    for probe in PROBES:
        del container[probe]
    container["env"] = [
        {"name": "HUB_HTTP_PORT", "value": str(http_port)},
        # The timeline is read from `message_handled`, which records processed write at DEBUG.
        {"name": "HUB_LOG_LEVEL", "value": "DEBUG"},
        *(
            e
            for e in container["env"]
            if not e["name"].startswith("HUB_KAFKA_") and e["name"] != "HUB_HTTP_PORT"
        ),
    ]
    return dict(deployment)


def config_map(bootstrap: str) -> dict[str, Any]:
    (config,) = [d for d in rendered("configmap.yaml") if d["metadata"]["name"] == "aftersales-hub"]
    config["data"]["HUB_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return dict(config)


def kube_play(manifest: Path, config: Path) -> tuple[list[str], list[str]]:
    """Play `manifest`; the ids of the pods and containers it started."""
    out = podman("kube", "play", "--configmap", str(config), str(manifest))
    pods = re.findall(r"Pod:\s*\n([0-9a-f]{64})", out)
    containers = re.findall(r"Container:\s*\n([0-9a-f]{64})", out)
    assert pods, out
    assert containers, out
    return pods, containers


@contextlib.asynccontextmanager
async def playing(
    image: str, broker: str, directory: Path
) -> AsyncIterator[tuple[dict[str, int], dict[str, str]]]:
    """Each group's pod from its manifest: their HTTP ports and container ids.

    On the way out every pod started here is removed by its id, and none may be left.
    """
    config = directory / "configmap.yaml"
    config.write_text(yaml.safe_dump(config_map(broker)), encoding="utf-8")
    ports = dict(zip(GROUPS, free_ports(len(GROUPS)), strict=True))
    pods: list[str] = []
    containers: dict[str, str] = {}
    try:
        for group in GROUPS:
            manifest = directory / f"{group}.yaml"
            manifest.write_text(
                yaml.safe_dump(pod_manifest(group, image, ports[group])), encoding="utf-8"
            )
            started_pods, started = kube_play(manifest, config)
            pods += started_pods
            (containers[group],) = started
        yield ports, containers
    finally:
        for pod in pods:
            podman("pod", "rm", "--force", "--time", "20", pod, timeout_s=60, check=False)
    assert [c for c in containers.values() if exists("container", c)] == []
    assert [p for p in pods if exists("pod", p)] == []


async def wait_ready(port: int, timeout_s: float = 90.0) -> dict[str, Any]:
    """/readyz of a pod once it says ready; the last answer when time runs out."""
    answer: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=3.0) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                response = await client.get(f"http://127.0.0.1:{port}/readyz")
                answer = response.json()
                if response.is_success and answer.get("ready"):
                    return answer
            except httpx.TransportError:
                pass
            await asyncio.sleep(1.0)
    return answer


async def publish_request(settings: HubSettings, number: int) -> str:
    """A storefront request published as the storefront would; its request id."""
    request = sample_request_v2(number)
    record = event_record(
        STOREFRONT_REQUESTS, request, key=request.request_id, source="urn:storefront:test"
    )
    sink = KafkaSink(settings, client_id="test-storefront")
    await sink.start()
    try:
        await sink.send([record])
    finally:
        await sink.stop()
    return request.request_id


async def first_pickup_order(broker: str, case_id: str) -> list[ConsumerRecord[bytes, bytes]]:
    """The pickup orders for `case_id` on whichever courier's topic shows one first."""
    reads = [
        asyncio.create_task(
            read_records(broker, courier_orders_topic(code), count=1, timeout_s=90,
                         match=lambda record: record.key == case_id.encode())
        )
        for code in COURIERS
    ]  # fmt: skip
    done, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
    while not any(task.result() for task in done) and pending:
        more, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        done |= more
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [record for task in done for record in task.result()]


def timeline(
    records: list[ConsumerRecord[bytes, bytes]], logs: dict[str, str], keys: set[str]
) -> list[str]:
    """One line per record written and per record a container handled, in time order."""
    rows: list[tuple[datetime, str]] = []
    for record in records:
        envelope = Envelope.from_headers(record.headers)
        when = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        rows.append((when, f"kafka    wrote {record.topic:<30} {envelope.type}"))
    for group, text in logs.items():
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "message_handled" and keys & set(map(str, event.values())):
                    outcome = f"{event.get('outcome')} in {event.get('duration_ms')} ms"
                    topic = event.get("topic", "?")
                    rows.append((datetime.fromisoformat(event["timestamp"]),
                                 f"{group:<8} read  {topic:<30} {outcome}"))  # fmt: skip
    rows.sort()
    start = rows[0][0]
    return [f"+{(when - start).total_seconds():6.3f}s  {what}" for when, what in rows]


async def test_a_case_travels_through_intake_and_dispatch_running_from_the_manifests(
    broker: str, tmp_path: Path
) -> None:
    image = require_image()
    settings = HubSettings.model_validate({"kafka_bootstrap_servers": broker})
    # The topics, applied by the image's own `hub topics apply`, as a platform's Job would.
    applied = podman("run", "--rm", "--network", "host", "--env",
                     f"HUB_KAFKA_BOOTSTRAP_SERVERS={broker}", image, "topics", "apply",
                     timeout_s=180)  # fmt: skip
    # Created here, or already by the compose test on the same broker: none is left to create.
    assert "aftersales.cases" in applied or re.fullmatch(r"\d+ topics unchanged\n", applied)

    async with playing(image, broker, tmp_path) as (ports, containers):
        for group in GROUPS:
            ready = await wait_ready(ports[group])
            checks = {"consuming": True, "store": True, "broker": True}
            assert ready == {"ready": True, "checks": checks}, group
            async with httpx.AsyncClient() as client:
                health = await client.get(f"http://127.0.0.1:{ports[group]}/healthz")
                metrics = await client.get(f"http://127.0.0.1:{ports[group]}/metrics")
            assert (health.status_code, metrics.status_code) == (200, 200)

        request_id = await publish_request(settings, 424242)
        case_id = case_id_for(request_id)
        placed = await first_pickup_order(broker, case_id)
        assert len(placed) == 1, f"pickup orders for {case_id}: {placed}"
        (order,) = placed
        assert Envelope.from_headers(order.headers).type == "courier.pickup.ordered.v1"
        assert json.loads(order.value or b"")["case_id"] == case_id

        requests = await read_records(
            broker, STOREFRONT_REQUESTS, count=1, match=lambda r: r.key == request_id.encode()
        )
        cases = await read_records(
            broker, CASES, count=2, timeout_s=10, match=lambda r: r.key == case_id.encode()
        )
        types = [Envelope.from_headers(record.headers).type for record in cases]
        assert types == ["aftersales.case.opened.v1", "aftersales.pickup.requested.v1"]
        written = {group: logs(container) for group, container in containers.items()}

    lines = timeline([*requests, *cases, order], written, {case_id, request_id})
    (tmp_path.parent / "case-timeline.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        log.info("case_timeline", line=line)
    for group in GROUPS:
        assert any(re.search(rf"s  {group} +read ", line) for line in lines), lines
