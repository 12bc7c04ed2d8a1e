"""The rendered manifests, judged by the schemas of Kubernetes, KEDA and Strimzi themselves.

Core resources: the Kubernetes JSON schemas that `kubernetes-validate` ships, strict (an unknown
field fails). KEDA: the CRDs of its Go module. Strimzi: the CRDs its own generator makes from its
published API model. The CRD schemas are made strict the way the API server's strict field
validation is: a field the schema does not know fails.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from crds import crd_schema, keda_crd_dir, kustomize_binary, strimzi_crd_dir
from kubernetes_validate.utils import ValidationError as KubernetesValidationError
from kubernetes_validate.utils import validate as validate_kubernetes

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests promise to suit (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.30.0"
CORE_KINDS = {"ConfigMap", "Deployment", "Service"}


def rendered() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc is not None
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered() if doc["kind"] == kind]


def strict(schema: Any) -> Any:
    """`schema` refusing fields it does not list, as the API server's strict validation does."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validator(crd: Path, version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(crd_schema(crd, version)))


def errors(check: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in check.iter_errors(document)
    )


@pytest.fixture(scope="module")
def keda() -> Path:
    return keda_crd_dir()


@pytest.fixture(scope="module")
def strimzi() -> Path:
    return strimzi_crd_dir()


def test_every_rendered_kind_is_validated_here() -> None:
    kinds = {doc["kind"] for doc in rendered()}
    custom = {"KafkaTopic", "KafkaUser", "ScaledObject", "TriggerAuthentication"}
    assert kinds == CORE_KINDS | custom


@pytest.mark.parametrize("kind", sorted(CORE_KINDS))
def test_core_resources_are_valid_kubernetes_in_strict_mode(kind: str) -> None:
    documents = of_kind(kind)
    assert documents
    for document in documents:
        validate_kubernetes(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_catches_a_misspelt_probe() -> None:
    deployment = copy.deepcopy(of_kind("Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(KubernetesValidationError, match="livenesProbe"):
        validate_kubernetes(deployment, KUBERNETES_VERSION, strict=True)


def test_scaled_objects_match_kedas_crd(keda: Path) -> None:
    check = validator(keda / "keda.sh_scaledobjects.yaml", "v1alpha1")
    documents = of_kind("ScaledObject")
    assert len(documents) == 10
    assert {d["metadata"]["name"]: errors(check, d) for d in documents} == {
        d["metadata"]["name"]: [] for d in documents
    }


def test_the_trigger_authentication_matches_kedas_crd(keda: Path) -> None:
    check = validator(keda / "keda.sh_triggerauthentications.yaml", "v1alpha1")
    (document,) = of_kind("TriggerAuthentication")
    assert errors(check, document) == []


def test_kedas_schema_refuses_a_scaled_object_without_its_target(keda: Path) -> None:
    check = validator(keda / "keda.sh_scaledobjects.yaml", "v1alpha1")
    broken = copy.deepcopy(of_kind("ScaledObject")[0])
    del broken["spec"]["scaleTargetRef"]
    broken["spec"]["triggers"][0]["metdata"] = broken["spec"]["triggers"][0].pop("metadata")
    assert errors(check, broken) == [
        "spec/triggers/0: 'metadata' is a required property",
        "spec/triggers/0: Additional properties are not allowed ('metdata' was unexpected)",
        "spec: 'scaleTargetRef' is a required property",
    ]


def test_kafka_topics_match_strimzis_crd(strimzi: Path) -> None:
    check = validator(strimzi / "kafkatopic.yaml", "v1beta2")
    documents = of_kind("KafkaTopic")
    assert len(documents) > 100
    assert [errors(check, d) for d in documents if errors(check, d)] == []


def test_kafka_users_match_strimzis_crd(strimzi: Path) -> None:
    check = validator(strimzi / "kafkauser.yaml", "v1beta2")
    documents = of_kind("KafkaUser")
    assert len(documents) == 18  # the groups, the Kafka-native partners, storefront, ops, lag
    assert {d["metadata"]["name"]: errors(check, d) for d in documents} == {
        d["metadata"]["name"]: [] for d in documents
    }


def test_strimzis_schema_refuses_an_unknown_mechanism_and_operation(strimzi: Path) -> None:
    check = validator(strimzi / "kafkauser.yaml", "v1beta2")
    broken = copy.deepcopy(of_kind("KafkaUser")[0])
    broken["spec"]["authentication"]["type"] = "scram-sha-256"
    broken["spec"]["authorization"]["acls"][0]["operations"] = ["Consume"]
    found = errors(check, broken)
    assert len(found) == 2
    assert found[0].startswith("spec/authentication/type: 'scram-sha-256' is not one of")
    assert found[1].startswith("spec/authorization/acls/0/operations/0: 'Consume' is not one of")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(  # noqa: S603 - kustomize built from its module, on our own files
        [str(kustomize_binary()), "build", str(directory)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def test_kustomize_builds_every_rendered_resource() -> None:
    def names(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((doc["kind"], doc["metadata"]["name"]) for doc in docs)

    assert names(kustomize_build(K8S)) == names(rendered())


def test_an_overlay_points_the_deployments_at_a_registry_and_a_namespace(tmp_path: Path) -> None:
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "aftersales",
        "resources": [os.path.relpath(K8S, tmp_path)],
        "images": [{"name": "aftersales-hub", "newName": "registry.example/hub", "newTag": "1.2"}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    built = kustomize_build(tmp_path)
    images = {
        container["image"]
        for doc in built
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example/hub:1.2"}
    assert {doc["metadata"]["namespace"] for doc in built} == {"aftersales"}
