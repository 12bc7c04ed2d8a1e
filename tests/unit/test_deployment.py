"""The manifests: derived from the declarations and the ACLs, committed, and in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.access import LAG_READER_USER, all_bindings
from hub.bootstrap import all_topics, declarations
from hub.core.acls import user
from hub.core.settings import HubSettings
from hub.deployment import Store, Target, check, render, write

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "aftersales-hub:0.1.0"


def documents(files: dict[str, str], name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(files[name]) if doc is not None]


def by_kind(files: dict[str, str], kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for name in files:
        for doc in documents(files, name):
            if doc.get("kind") == kind:
                found[doc["metadata"]["name"]] = doc
    return found


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render(HubSettings(), Target(image=IMAGE))


def test_committed_manifests_are_in_step_with_the_declarations(files: dict[str, str]) -> None:
    assert check(files, DEPLOY) == []


def test_a_stale_missing_or_stray_file_is_reported(files: dict[str, str], tmp_path: Path) -> None:
    write(files, tmp_path)
    (tmp_path / "k8s" / "deployments.yaml").write_text("# edited by hand\n", encoding="utf-8")
    (tmp_path / "k8s" / "kafka-users.yaml").unlink()
    (tmp_path / "k8s" / "extra.yaml").write_text("{}\n", encoding="utf-8")
    assert [line.split(":")[0] for line in check(files, tmp_path)] == [
        "k8s/deployments.yaml", "k8s/kafka-users.yaml", "k8s/extra.yaml"
    ]  # fmt: skip
    assert write(files, tmp_path) == ["k8s/deployments.yaml", "k8s/kafka-users.yaml"]


def test_rendering_twice_gives_the_same_bytes() -> None:
    first = render(HubSettings(), Target(image=IMAGE))
    assert render(HubSettings(), Target(image=IMAGE)) == first


def test_a_deployment_per_group_probed_on_healthz_and_readyz_as_non_root(
    files: dict[str, str],
) -> None:
    deployments = by_kind(files, "Deployment")
    groups = [d.group for d in declarations(HubSettings())]
    assert sorted(deployments) == sorted(f"hub-{group}" for group in groups)
    dispatch = deployments["hub-dispatch"]["spec"]["template"]["spec"]
    (container,) = dispatch["containers"]
    assert container["args"] == ["run", "dispatch"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "HUB_HTTP_PORT", "value": "9464"} in container["env"]
    assert container["envFrom"][0] == {"configMapRef": {"name": "aftersales-hub"}}
    assert container["envFrom"][1]["secretRef"]["name"] == "aftersales-hub"
    password = next(e for e in container["env"] if e["name"] == "HUB_KAFKA_PASSWORD")
    # The password is the one Strimzi's User Operator writes for the group's KafkaUser.
    assert password["valueFrom"]["secretKeyRef"] == {"name": "dispatch", "key": "password"}
    assert dispatch["securityContext"]["runAsNonRoot"] is True
    assert dispatch["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "512Mi"
    gateway = deployments["hub-gateway-sf"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["args"] == ["run", "gateway-sf", "--webhook-port", "8080"]
    # Partners reach the webhooks, platform backends the front door, on the ingress's own port.
    assert sorted(by_kind(files, "Service")) == [
        "hub-gateway-center-sh", "hub-gateway-sf", "hub-ingress"
    ]  # fmt: skip
    ingress = by_kind(files, "Deployment")["hub-ingress"]["spec"]["template"]["spec"]
    assert {"name": "HUB_INGRESS_PORT", "value": "9464"} in ingress["containers"][0]["env"]


def test_the_config_map_carries_the_topic_layout_the_manifests_were_rendered_with() -> None:
    settings = HubSettings(retry_tiers=("5s", "30s"), partitions=6)
    files = render(settings, Target(image=IMAGE, cluster="prod"))
    data = by_kind(files, "ConfigMap")["aftersales-hub"]["data"]
    assert data["HUB_RETRY_TIERS"] == "5s,30s"
    assert data["HUB_PARTITIONS"] == "6"
    assert data["HUB_KAFKA_BOOTSTRAP_SERVERS"] == "prod-kafka-bootstrap:9092"
    topics = by_kind(files, "KafkaTopic")
    assert "aftersales.cases.dispatch.retry.30s" in topics
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics.values()} == {"prod"}


def test_a_kafka_topic_for_every_declared_topic_as_declared(files: dict[str, str]) -> None:
    topics = by_kind(files, "KafkaTopic")
    declared = all_topics(HubSettings())
    assert sorted(topics) == sorted(spec.name for spec in declared)
    status = topics["aftersales.case-status"]["spec"]
    assert status["config"]["cleanup.policy"] == "compact"
    assert status["config"]["retention.ms"] == -1
    for spec in declared:
        rendered = topics[spec.name]["spec"]
        assert rendered["topicName"] == spec.name
        assert (rendered["partitions"], rendered["replicas"]) == (3, 1)
        assert {k: str(v) for k, v in rendered["config"].items()} == dict(spec.configs)


def test_kafka_users_grant_exactly_what_hub_acls_apply_grants(files: dict[str, str]) -> None:
    users = by_kind(files, "KafkaUser")
    granted = set()
    for name, kafka_user in users.items():
        assert kafka_user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert kafka_user["spec"]["authorization"]["type"] == "simple"
        for acl in kafka_user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            granted |= {
                (user(name), resource["type"].upper(), resource["name"], operation.upper())
                for operation in acl["operations"]
            }
    expected = {
        (b.principal, b.resource_type.name, b.resource_name, b.operation.name)
        for b in all_bindings(HubSettings())
    }
    assert granted == expected
    assert {"intake", "ops", "storefront", "partner-jd", LAG_READER_USER} <= set(users)


def test_a_scaled_object_per_group_on_the_lag_of_its_declared_inputs_only(
    files: dict[str, str],
) -> None:
    scaled = by_kind(files, "ScaledObject")
    dispatch = scaled["hub-dispatch"]["spec"]
    topics = [t["metadata"]["topic"] for t in dispatch["triggers"]]
    assert topics == ["aftersales.cases", "courier.sf.events", "courier.jd.events",
                      "courier.yd.events"]  # fmt: skip
    assert {t["metadata"]["consumerGroup"] for t in dispatch["triggers"]} == {"dispatch"}
    assert {t["type"] for t in dispatch["triggers"]} == {"kafka"}
    every_topic = [t["metadata"]["topic"] for s in scaled.values() for t in s["spec"]["triggers"]]
    assert not [t for t in every_topic if ".retry." in t or ".timer." in t or "replay" in t]
    assert dispatch["scaleTargetRef"] == {"name": "hub-dispatch"}
    assert (dispatch["minReplicaCount"], dispatch["maxReplicaCount"]) == (1, 3)
    # Every group that reads topics scales on their lag; the front door reads none.
    assert sorted(scaled) == sorted(set(by_kind(files, "Deployment")) - {"hub-ingress"})


def test_replicas_are_bounded_by_input_partitions_and_by_one_on_sqlite() -> None:
    settings = HubSettings(partitions=12)
    postgres = by_kind(render(settings, Target(image=IMAGE)), "ScaledObject")
    sqlite = by_kind(render(settings, Target(image=IMAGE, store=Store.SQLITE)), "ScaledObject")
    assert {s["spec"]["maxReplicaCount"] for s in postgres.values()} == {12}
    assert {s["spec"]["maxReplicaCount"] for s in sqlite.values()} == {1}


def test_the_autoscaler_reads_lag_with_its_own_describe_only_user(files: dict[str, str]) -> None:
    lag_reader = {
        (b.resource_type.name, b.resource_name, b.operation.name)
        for b in all_bindings(HubSettings())
        if b.principal == user(LAG_READER_USER)
    }
    assert {operation for _, _, operation in lag_reader} == {"DESCRIBE"}
    assert ("GROUP", "dispatch", "DESCRIBE") in lag_reader
    assert ("TOPIC", "courier.jd.events", "DESCRIBE") in lag_reader
    auth = by_kind(files, "TriggerAuthentication")["aftersales-hub-lag-reader"]["spec"]
    assert auth["secretTargetRef"] == [
        {"parameter": "password", "name": LAG_READER_USER, "key": "password"}
    ]


def test_the_kustomization_lists_every_manifest_and_names_the_image(
    files: dict[str, str],
) -> None:
    (kustomization,) = documents(files, "k8s/kustomization.yaml")
    assert kustomization["resources"] == sorted(
        name.removeprefix("k8s/") for name in files
        if name.startswith("k8s/") and name != "k8s/kustomization.yaml"
    )  # fmt: skip
    assert kustomization["images"] == [{"name": "aftersales-hub", "newTag": "0.1.0"}]


def test_the_compose_file_runs_every_group_after_the_topics(files: dict[str, str]) -> None:
    (compose,) = documents(files, "compose.yaml")
    services = compose["services"]
    groups = [d.group for d in declarations(HubSettings())]
    assert set(services) == {*groups, "topics", "kafka"}
    assert services["topics"]["command"] == ["topics", "apply"]
    assert services["intake"]["command"] == ["run", "intake"]
    assert services["intake"]["depends_on"] == {
        "topics": {"condition": "service_completed_successfully"}
    }
    assert services["kafka"]["profiles"] == ["kafka"]
    assert services["gateway-sf"]["environment"]["HUB_COURIER_SF_CHECKWORD"] is None
    assert services["intake"]["image"] == "${AFTERSALES_HUB_IMAGE:-aftersales-hub:0.1.0}"
