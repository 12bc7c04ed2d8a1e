"""JSON Schema files of every published version, and the check that keeps them honest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from hub.core.registry import Event, Registry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
EXPORT = "run `hub schemas export`"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the schema directory is not in step with the models."""

    file: str
    text: str
    breaking: bool = False

    def __str__(self) -> str:
        return f"{self.file}: {self.text}"


def render_schema(model: type[Event]) -> str:
    """The JSON Schema of one version, serialised deterministically."""
    schema = model.model_json_schema(mode="validation")
    schema.update(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": model.dataschema(),
            "x-ce-type": model.ce_type(),
            "x-version": model.version,
            "x-minor": model.minor,
        }
    )
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass(frozen=True, slots=True)
class _Field:
    signature: str
    required: bool
    enum: frozenset[str] | None


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _flatten(
    node: dict[str, Any], defs: dict[str, Any], path: str, out: dict[str, _Field], *,
    required: bool,
) -> None:  # fmt: skip
    node = _deref(node, defs)
    nullable = False
    if "anyOf" in node:
        variants = [_deref(variant, defs) for variant in node["anyOf"]]
        nullable = any(variant.get("type") == "null" for variant in variants)
        variants = [variant for variant in variants if variant.get("type") != "null"]
        if len(variants) != 1:
            signature = "anyOf(" + ",".join(sorted(_signature(v) for v in variants)) + ")"
            out[path] = _Field(signature + ("|null" if nullable else ""), required, None)
            return
        node = variants[0]
    enum = frozenset(map(str, node["enum"])) if "enum" in node else None
    out[path] = _Field(_signature(node) + ("|null" if nullable else ""), required, enum)
    prefix = f"{path}." if path else ""
    if node.get("type") == "object":
        needed = set(node.get("required", ()))
        for name, child in node.get("properties", {}).items():
            _flatten(child, defs, prefix + name, out, required=name in needed)
    elif node.get("type") == "array" and "items" in node:
        _flatten(node["items"], defs, f"{path}[]", out, required=True)


def _signature(node: dict[str, Any]) -> str:
    kind = node.get("type", "any")
    if "enum" in node:
        return f"{kind}:enum"
    if isinstance(kind, list):
        kind = "|".join(sorted(kind))
    return f"{kind}:{node['format']}" if "format" in node else str(kind)


def _fields(schema: dict[str, Any]) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    _flatten(schema, schema.get("$defs", {}), "", out, required=True)
    out.pop("", None)
    return out


def compare(old: dict[str, Any], new: dict[str, Any], file: str) -> list[Problem]:
    """What changed from the published schema `old` to `new`, breaking changes first."""
    before, after = _fields(old), _fields(new)
    breaks: list[str] = []
    for path, field in before.items():
        if path not in after:
            breaks.append(f"field `{path}` was removed")
            continue
        now = after[path]
        widened = now.signature == f"{field.signature}|null"
        if now.signature != field.signature and not widened:
            breaks.append(f"field `{path}` changed type from {field.signature} to {now.signature}")
        elif field.enum is not None and now.enum is not None and not field.enum <= now.enum:
            removed = ", ".join(sorted(field.enum - now.enum))
            breaks.append(f"field `{path}` lost enum value(s) {removed}")
        if now.required and not field.required:
            breaks.append(f"field `{path}` became required")
    breaks += [
        f"new field `{path}` is required"
        for path, field in after.items()
        if path not in before and field.required
    ]
    version = new.get("x-ce-type", file)
    fix = f"publish a new major version of {version} with an upcaster instead of editing it"
    problems = [Problem(file, f"{text}; {fix}", breaking=True) for text in breaks]
    if not problems and before != after and new.get("x-minor", 0) <= old.get("x-minor", 0):
        added = ", ".join(f"`{p}`" for p in sorted(set(after) - set(before))) or "fields"
        problems.append(
            Problem(file, f"added {added} without raising `minor` of {version}; raise it")
        )
    return problems


def _expected(registry: Registry) -> dict[str, str]:
    return {
        model.schema_file(): render_schema(model)
        for versions in registry.families().values()
        for model in versions
    }


def check(registry: Registry, directory: Path) -> list[Problem]:
    """Every way `directory` differs from the models: stale, missing, orphan or breaking files."""
    expected = _expected(registry)
    problems: list[Problem] = []
    for file, text in expected.items():
        path = directory / file
        if not path.exists():
            problems.append(Problem(file, f"missing; {EXPORT}"))
            continue
        committed = path.read_text(encoding="utf-8")
        if committed == text:
            continue
        found = compare(json.loads(committed), json.loads(text), file)
        problems += found or [Problem(file, f"stale; {EXPORT}")]
    present = {str(path.relative_to(directory)) for path in directory.rglob("*.json")}
    problems += [
        Problem(file, "no model produces this file; remove it or restore its model")
        for file in sorted(present - set(expected))
    ]
    return problems


def export(registry: Registry, directory: Path) -> list[str]:
    """Write every schema file; refuse (writing nothing) when a change would break consumers."""
    breaking = [problem for problem in check(registry, directory) if problem.breaking]
    if breaking:
        raise ValueError("\n".join(map(str, breaking)))
    written = []
    for file, text in _expected(registry).items():
        path = directory / file
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(file)
    return written
