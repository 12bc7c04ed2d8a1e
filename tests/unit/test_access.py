"""ACLs as code: each principal gets exactly the topics and groups it works with."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from hub.access import OPERATIONS_USER, all_bindings, partner_user
from hub.core.acls import Operation, ResourceType, user
from hub.core.settings import HubSettings
from hub.core.topics import CASES, dead_letter_topic, replay_topic
from lab.harness.kafka import NodeSpec, render_properties

if TYPE_CHECKING:
    from pathlib import Path


def rights(principal: str) -> set[tuple[str, str, str]]:
    return {
        (b.operation.name, b.resource_type.name, b.resource_name)
        for b in all_bindings(HubSettings())
        if b.principal == user(principal)
    }


def test_a_kafka_courier_touches_only_its_own_topics_and_group() -> None:
    assert rights(partner_user("jd")) == {
        ("READ", "TOPIC", "courier.jd.pickup-orders"),
        ("WRITE", "TOPIC", "courier.jd.events"),
        ("READ", "GROUP", "partner-jd"),
    }


def test_a_parts_supplier_touches_only_its_own_topics_and_group() -> None:
    assert rights(partner_user("bjzx")) == {
        ("READ", "TOPIC", "parts.bjzx.orders"),
        ("WRITE", "TOPIC", "parts.bjzx.events"),
        ("READ", "GROUP", "partner-bjzx"),
    }
    repair = rights("repair")
    assert {("READ", "TOPIC", "parts.bjzx.events"), ("WRITE", "TOPIC", "parts.bjzx.orders"),
            ("WRITE", "TOPIC", "repair.timer.168h")} <= repair  # fmt: skip


def test_a_service_reads_its_inputs_and_writes_only_what_it_publishes() -> None:
    intake = rights("intake")
    assert ("READ", "TOPIC", "storefront.aftersales.requests") in intake
    assert ("READ", "TOPIC", replay_topic("intake")) in intake
    assert ("WRITE", "TOPIC", CASES) in intake
    assert (
        "WRITE",
        "TOPIC",
        dead_letter_topic("storefront.aftersales.requests", "intake"),
    ) in intake
    written = {name for operation, kind, name in intake if operation == "WRITE"}
    assert not {name for name in written if name.startswith(("courier.", "repair.", "hub.ops"))}
    # Nobody but operations may replay into a group.
    replayers = {
        b.principal
        for b in all_bindings(HubSettings())
        if b.operation is Operation.WRITE and b.resource_name == replay_topic("intake")
    }
    assert replayers == {user(OPERATIONS_USER)}


def test_operations_own_dead_letters_replays_and_the_audit() -> None:
    ops = rights(OPERATIONS_USER)
    letters = dead_letter_topic("aftersales.cases", "dispatch")
    assert {("READ", "TOPIC", letters), ("DELETE", "TOPIC", letters)} <= ops
    assert {("WRITE", "TOPIC", "hub.ops.audit"), ("WRITE", "TOPIC", "dispatch.replay")} <= ops
    assert not any(kind == ResourceType.CLUSTER.name for _, kind, _ in ops)


def test_a_secured_node_has_no_plaintext_client_listener(tmp_path: Path) -> None:
    node = NodeSpec(node_id=1, port=9092, controller_port=9192, directory=tmp_path)
    secured = render_properties(node, [node], admin_password=secrets.token_hex(8))
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9192\n" in secured
    assert (
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n" in secured
    )
    assert "allow.everyone.if.no.acl.found=false\n" in secured
    assert "PLAINTEXT://" not in secured.replace("SASL_PLAINTEXT://", "")
    assert "SASL" not in render_properties(node, [node])
