"""AsyncAPI 3.0 documents for the platform and each Kafka-native partner, from the declarations.

Channels are the topics a principal's ACLs let it read or write; the messages on each are the
event families the declared services route there (what the hub writes) or handle there (what the
hub reads). Nothing here is written by hand, so a new partner, output or version shows up in the
documents when `hub asyncapi export` runs, and `hub asyncapi check` fails until it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import yaml

from hub.access import STOREFRONT_USER, partner_bindings, partner_user, storefront_bindings
from hub.bootstrap import declarations
from hub.core.acls import Operation, ResourceType, user

if TYPE_CHECKING:
    from pathlib import Path

    from dispatch.partners import PartnerTable
    from hub.bootstrap import Declaration
    from hub.core.acls import AclBinding
    from hub.core.registry import Event, Registry
    from hub.core.settings import HubSettings

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
RUN_EXPORT = "run `hub asyncapi export`"
# Where the documents live relative to the schemas: payloads are referenced, not copied.
SCHEMAS_FROM_DOCS = PurePosixPath("../../schemas")
Action = Literal["send", "receive"]

CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": (
        "CloudEvents 1.0 attributes in Kafka binary mode (ce_* headers, the data in the value). "
        "Structured mode (content-type application/cloudevents+json, the whole event as JSON "
        "in the value) is accepted on input as well."
    ),
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {
            "type": "string",
            "description": "Unique per ce_source; a redelivered event keeps its id.",
        },
        "ce_source": {"type": "string", "description": "URI of the producer, e.g. urn:courier:jd."},
        "ce_type": {"type": "string", "description": "Event family and major version."},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "Usually the case id."},
        "ce_dataschema": {"type": "string", "description": "The exact schema, minor included."},
        "content-type": {"type": "string", "const": "application/json"},
        "ce_correlationid": {
            "type": "string",
            "description": "Extension: the id of the event that started the case's flow.",
        },
        "ce_causationid": {
            "type": "string",
            "description": "Extension: the id of the event this one answers.",
        },
        "traceparent": {"type": "string", "description": "W3C trace context."},
    },
}
KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "The case id: every event of one case goes to one partition, in order.",
}


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a document is for: its SASL user, consumer group and the topics its ACLs allow."""

    name: str
    title: str
    principal: str
    group: str


def audiences(table: PartnerTable) -> list[Audience]:
    """The platform (storefront) and every Kafka-native courier, repair center and supplier."""
    partners = [
        *((c.code, c.name) for c in table.couriers if c.integration == "kafka"),
        *((c.code, c.contact.name) for c in table.repair_centers if c.integration == "kafka"),
        *((s.code, s.name) for s in table.parts_suppliers if s.integration == "kafka"),
    ]
    return [
        Audience("platform", "Storefront platform", STOREFRONT_USER, STOREFRONT_USER),
        *(
            Audience(f"partner-{code}", name, partner_user(code), partner_user(code))
            for code, name in partners
        ),
    ]


class _Topology:
    """What the declarations say about each topic: who writes which family, who reads it."""

    def __init__(self, declared: list[Declaration], external: set[str], registry: Registry) -> None:
        self._declared = declared
        self._registry = registry
        # Families the hub itself routes to its own topics: never a partner's to send.
        self._internal = {
            family
            for d in declared
            for family, route in d.service.emits.items()
            if set(route.topics) - external
        }

    def written(self, topic: str) -> list[type[Event]]:
        """What the hub writes to `topic`: the latest version of each family routed there."""
        families = {
            family
            for d in self._declared
            for family, route in d.service.emits.items()
            if topic in route.topics
        }
        return [self._registry.latest(family) for family in sorted(families)]

    def read(self, topic: str) -> list[type[Event]]:
        """What the hub reads from `topic`: every version of each family its readers handle.

        A group reading several partners' topics handles all their families; each topic carries
        those of its own namespace (`repair.hz.events`: `repair.center.*`, not `parts.*`).
        """
        namespace = topic.split(".", 1)[0]
        families = {
            family
            for d in self._declared
            if topic in d.service.inputs
            for family in d.service.handlers
            if family not in self._internal
            and not _is_timer(d, family)
            and family.split(".", 1)[0] == namespace
        }
        known = self._registry.families()
        return [model for family in sorted(families) for model in known[family]]


def _is_timer(declaration: Declaration, family: str) -> bool:
    """A group's own timer event: declarations name no timer family, so by the naming rule."""
    # Timer events are named `<group>.<...>-due` (dispatch.pickup.acceptance-due): the suffix
    # tells them from partner events that share the group's prefix (repair.center.diagnosed).
    # A test pins the rule.
    prefix = f"{declaration.group}."
    return (
        bool(declaration.service.timers) and family.startswith(prefix) and family.endswith("-due")
    )


def _topics(bindings: list[AclBinding], principal: str, operation: Operation) -> list[str]:
    return sorted(
        b.resource_name
        for b in bindings
        if b.principal == principal
        and b.resource_type is ResourceType.TOPIC
        and b.operation is operation
    )


def build_documents(
    settings: HubSettings, table: PartnerTable, registry: Registry
) -> dict[str, dict[str, Any]]:
    """Every document by file name (`platform.yaml`, `partner-<code>.yaml`)."""
    bindings = [*storefront_bindings(), *partner_bindings(table)]
    declared = declarations(settings, table)
    # A partner's events: written by the partner itself, or by the hub's gateway on its behalf.
    external = {b.resource_name for b in bindings if b.operation is Operation.WRITE} | {
        topic for d in declared if d.partner is not None for topic in d.outputs
    }
    topology = _Topology(declared, external, registry)
    documents: dict[str, dict[str, Any]] = {}
    for audience in audiences(table):
        principal = user(audience.principal)
        channels: list[tuple[Action, str, list[type[Event]]]] = [
            *(("send", t, topology.read(t)) for t in _topics(bindings, principal, Operation.WRITE)),
            *(
                ("receive", t, topology.written(t))
                for t in _topics(bindings, principal, Operation.READ)
            ),
        ]
        documents[f"{audience.name}.yaml"] = _document(audience, channels)
    return documents


def _document(
    audience: Audience, channels: list[tuple[Action, str, list[type[Event]]]]
) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    channel_objects: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for action, topic, models in channels:
        names = [model.ce_type() for model in models]
        messages |= {model.ce_type(): _message(model) for model in models}
        channel_objects[topic] = {
            "address": topic,
            "title": topic,
            "description": (
                f"You write these events (the hub reads them) as SASL user {audience.principal}."
                if action == "send"
                else f"The hub writes these events; you read them in group {audience.group}."
            ),
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in names],
        }
        if action == "receive":
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [audience.group]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        operations[f"{action}.{topic}"] = operation
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"After-sales repair hub: {audience.title}",
            "version": "1.0.0",
            "description": (
                "Generated from the hub's service declarations and ACLs by `hub asyncapi "
                "export`; do not edit. Payload schemas are the files in schemas/."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "{bootstrap}",
                "protocol": "kafka-secure",
                "description": "SASL_SSL with SCRAM-SHA-512; one user per partner.",
                "variables": {
                    "bootstrap": {"description": "The bootstrap servers you were given."}
                },
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            }
        },
        "channels": channel_objects,
        "operations": operations,
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": {"CloudEventsHeaders": CLOUDEVENTS_HEADERS, "CaseKey": KEY_SCHEMA},
            "securitySchemes": {
                "scram": {
                    "type": "scramSha512",
                    "description": f"SASL/SCRAM-SHA-512 as user {audience.principal}.",
                }
            },
        },
    }


def _message(model: type[Event]) -> dict[str, Any]:
    return {
        "name": model.ce_type(),
        "title": model.__name__,
        "summary": (model.__doc__ or model.ce_type()).strip().splitlines()[0],
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "headers": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEventsHeaders"},
                {
                    "type": "object",
                    "properties": {
                        "ce_type": {"const": model.ce_type()},
                        "ce_dataschema": {"const": model.dataschema()},
                    },
                },
            ]
        },
        "payload": {"$ref": str(SCHEMAS_FROM_DOCS / model.schema_file())},
        "bindings": {
            "kafka": {
                "key": {"$ref": "#/components/schemas/CaseKey"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def render(document: dict[str, Any]) -> str:
    """A document as YAML, deterministically."""
    header = "# Generated by `hub asyncapi export` from the service declarations; do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def export(documents: dict[str, dict[str, Any]], directory: Path) -> list[str]:
    """Write every document that changed; the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for name, document in documents.items():
        path, text = directory / name, render(document)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.write_text(text, encoding="utf-8")
        written.append(name)
    return written


def check(documents: dict[str, dict[str, Any]], directory: Path) -> list[str]:
    """Every document missing, stale, or with no audience any more, one line each."""
    problems: list[str] = []
    for name, document in documents.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing; {RUN_EXPORT}")
        elif path.read_text(encoding="utf-8") != render(document):
            problems.append(f"{name}: stale: differs from the declarations; {RUN_EXPORT}")
    present = {p.name for p in directory.glob("*.yaml")} if directory.is_dir() else set()
    problems += [
        f"{name}: no platform or Kafka-native partner has this document; delete it"
        for name in sorted(present - documents.keys())
    ]
    return problems
