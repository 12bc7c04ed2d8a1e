"""The AsyncAPI documents: derived from the declarations and ACLs, committed, and valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dispatch.partners import Courier, PartnerTable, load_partners
from hub.asyncapi import build_documents, check, export
from hub.bootstrap import all_topics
from hub.core.settings import HubSettings
from hub.messages import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "asyncapi"
VALIDATOR = ROOT / "tests" / "support" / "asyncapi"
INTERNAL_MARKERS = (".retry.", ".timer.", ".dlq", ".replay", ".parking", "hub.ops.audit")


def _documents(table: PartnerTable | None = None) -> dict[str, dict[str, object]]:
    return build_documents(HubSettings(), table or load_partners(), CATALOGUE)


def _channels(document: dict[str, object]) -> dict[str, list[str]]:
    channels = document["channels"]
    assert isinstance(channels, dict)
    return {topic: sorted(channel["messages"]) for topic, channel in channels.items()}


def _actions(document: dict[str, object]) -> dict[str, str]:
    operations = document["operations"]
    assert isinstance(operations, dict)
    return {op["channel"]["$ref"].rsplit("/", 1)[-1]: op["action"] for op in operations.values()}


def test_committed_documents_are_in_step_with_the_declarations() -> None:
    assert check(_documents(), DOCS) == []


def test_one_document_for_the_platform_and_each_kafka_native_partner() -> None:
    assert sorted(_documents()) == [
        "partner-bjzx.yaml", "partner-hz.yaml", "partner-jd.yaml", "partner-yd.yaml",
        "platform.yaml",
    ]  # fmt: skip


def test_platform_sends_requests_and_receives_case_status() -> None:
    document = _documents()["platform.yaml"]
    assert _actions(document) == {
        "storefront.aftersales.requests": "send",
        "aftersales.case-status": "receive",
    }
    channels = _channels(document)
    assert channels["aftersales.case-status"] == ["aftersales.case.status.v1"]
    assert "storefront.aftersales.requested.v1" in channels["storefront.aftersales.requests"]


def test_courier_document_carries_what_dispatch_routes_and_reads() -> None:
    document = _documents()["partner-jd.yaml"]
    assert _actions(document) == {
        "courier.jd.events": "send",
        "courier.jd.pickup-orders": "receive",
    }
    assert _channels(document) == {
        "courier.jd.events": [
            "courier.order.accepted.v1", "courier.order.rejected.v1", "courier.tracking.reported.v1"
        ],
        "courier.jd.pickup-orders": [
            "courier.pickup.cancel-requested.v1", "courier.pickup.ordered.v1"
        ],
    }  # fmt: skip


def test_repair_center_document_carries_tickets_and_reports() -> None:
    channels = _channels(_documents()["partner-hz.yaml"])
    assert channels["repair.hz.tickets"] == [
        "repair.parts.ready.v1", "repair.quote.decided.v1", "repair.ticket.opened.v1",
        "repair.ticket.withdrawn.v1",
    ]  # fmt: skip
    assert all(name.startswith("repair.center.") for name in channels["repair.hz.events"])
    assert len(channels["repair.hz.events"]) == 4


def test_parts_supplier_document_carries_reservations_and_its_answers_only() -> None:
    document = _documents()["partner-bjzx.yaml"]
    assert _actions(document) == {"parts.bjzx.events": "send", "parts.bjzx.orders": "receive"}
    assert _channels(document) == {
        "parts.bjzx.events": [
            "parts.supplier.rejected.v1", "parts.supplier.reserved.v1",
            "parts.supplier.shortage.v1",
        ],
        "parts.bjzx.orders": [
            "parts.reservation.cancel-requested.v1", "parts.reservation.requested.v1",
        ],
    }  # fmt: skip


def test_no_internal_topic_appears_in_any_document() -> None:
    internal = {spec.name for spec in all_topics(HubSettings())} - {
        topic for document in _documents().values() for topic in _channels(document)
    }
    for name, document in _documents().items():
        text = yaml.safe_dump(document)
        assert not [marker for marker in INTERNAL_MARKERS if marker in text], name
        assert not [topic for topic in internal if f"address: {topic}\n" in text], name


def test_every_message_has_the_cloudevents_headers_key_and_its_schema() -> None:
    for document in _documents().values():
        components = document["components"]
        assert isinstance(components, dict)
        assert components["securitySchemes"]["scram"]["type"] == "scramSha512"
        for name, message in components["messages"].items():
            model = CATALOGUE.model_for(name)
            assert message["headers"]["allOf"][1]["properties"]["ce_type"] == {"const": name}
            assert message["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/CaseKey"}
            payload = DOCS / message["payload"]["$ref"]
            assert payload.resolve() == (ROOT / "schemas" / model.schema_file()).resolve()


def test_a_new_kafka_native_courier_gets_a_document(tmp_path: Path) -> None:
    table = load_partners()
    extra = Courier.model_validate(table.courier("jd").model_dump() | {"code": "zt"})
    table = table.model_copy(update={"couriers": (*table.couriers, extra)})
    documents = _documents(table)
    assert "courier.zt.pickup-orders" in _channels(documents["partner-zt.yaml"])
    export(_documents(), tmp_path)
    assert check(documents, tmp_path) == ["partner-zt.yaml: missing; run `hub asyncapi export`"]


def test_stale_and_orphan_documents_are_reported(tmp_path: Path) -> None:
    export(_documents(), tmp_path)
    (tmp_path / "platform.yaml").write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    (tmp_path / "partner-gone.yaml").write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    problems = check(_documents(), tmp_path)
    assert [problem.split(":")[0] for problem in problems] == ["platform.yaml", "partner-gone.yaml"]


@pytest.mark.skipif(
    shutil.which("node") is None or not (VALIDATOR / "node_modules").is_dir(),
    reason="the AsyncAPI parser is not installed (make asyncapi-tools)",
)
def test_the_asyncapi_parser_accepts_every_document_and_refuses_a_broken_one(
    tmp_path: Path,
) -> None:
    node = shutil.which("node") or "node"
    files = sorted(str(path) for path in DOCS.glob("*.yaml"))
    run = subprocess.run(  # noqa: S603 - our own script on our own files
        [node, str(VALIDATOR / "validate.mjs"), *files], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # A server with a port list where a string belongs: the parser's schema refuses it.
    text = (DOCS / "partner-jd.yaml").read_text(encoding="utf-8")
    broken_copy = tmp_path / "broken.yaml"
    broken_copy.write_text(text.replace("kafka-secure", "kafka-secure\n    port: []"), "utf-8")
    run = subprocess.run(  # noqa: S603
        [node, str(VALIDATOR / "validate.mjs"), str(broken_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1, run.stdout
    assert "error" in run.stdout


def test_timer_families_follow_the_naming_rule_the_documents_rely_on() -> None:
    # The documents tell a group's timer events from partner events by name: pin that rule.
    from hub.messages.parts import PartsWaitDueV1  # noqa: PLC0415
    from hub.messages.timers import PickupAcceptanceDueV1  # noqa: PLC0415
    from hub.messages.tracker import SlaCheckDueV1  # noqa: PLC0415

    assert PickupAcceptanceDueV1.event_type.startswith("dispatch.")
    assert SlaCheckDueV1.event_type.startswith("tracker.")
    assert PartsWaitDueV1.event_type.startswith("repair.")
    for timer in (PickupAcceptanceDueV1, SlaCheckDueV1, PartsWaitDueV1):
        assert timer.event_type.endswith("-due")
