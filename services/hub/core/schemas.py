"""JSON Schema files of every published version, and the check that keeps them compatible."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

    from hub.core.registry import Event, Registry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
RUN_EXPORT = "run `hub schemas export`"
# A higher lower bound or a lower upper bound rejects messages the published version accepted.
LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
OPAQUE_CONSTRAINTS = ("pattern", "multipleOf")  # no telling whether a new value is looser

ProblemKind = Literal["stale", "orphan", "breaking", "unversioned"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One way the schema directory is out of step with the models."""

    file: str
    text: str
    kind: ProblemKind

    def __str__(self) -> str:
        return f"{self.file}: {self.text}"


@dataclass(frozen=True, slots=True)
class Change:
    """One schema file `export` wrote."""

    file: str
    action: Literal["created", "updated"]

    def __str__(self) -> str:
        return f"{self.action} {self.file}"


class IncompatibleSchemaError(ValueError):
    """`export` refused: a published version changed incompatibly or without a new minor."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def render_schema(model: type[Event]) -> str:
    """The JSON Schema of one version, serialised deterministically."""
    schema = model.model_json_schema(mode="validation")
    schema |= {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": model.dataschema(),
        "x-ce-type": model.ce_type(),
        "x-version": model.version,
        "x-minor": model.minor,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(registry: Registry, directory: Path) -> list[Change]:
    """Write every schema file; refuse, writing nothing, when a published version would break."""
    refused = [p for p in check(registry, directory) if p.kind in {"breaking", "unversioned"}]
    if refused:
        raise IncompatibleSchemaError(refused)
    changes: list[Change] = []
    for model in _models(registry):
        path, text = directory / model.schema_file(), render_schema(model)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        changes.append(Change(model.schema_file(), "updated" if path.exists() else "created"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return changes


def check(registry: Registry, directory: Path) -> list[Problem]:
    """Every missing, stale, orphan or incompatibly changed schema file in `directory`."""
    problems: list[Problem] = []
    for model in _models(registry):
        file, text = model.schema_file(), render_schema(model)
        path = directory / file
        if not path.is_file():
            problems.append(Problem(file, f"missing; {RUN_EXPORT}", "stale"))
            continue
        committed = path.read_text(encoding="utf-8")
        if committed == text:
            continue
        try:
            published = json.loads(committed)
        except json.JSONDecodeError as error:
            problems.append(Problem(file, f"is not valid JSON ({error}); {RUN_EXPORT}", "stale"))
            continue
        changed = _compatibility(registry, model, published, json.loads(text))
        problems += changed or [
            Problem(file, f"stale: differs from what the model generates; {RUN_EXPORT}", "stale")
        ]
    produced = {model.schema_file() for model in _models(registry)}
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    problems += [
        Problem(
            file,
            "no model produces this file; restore its model (a published version is kept "
            "forever) or delete the file",
            "orphan",
        )
        for file in sorted(present - produced)
    ]
    return problems


def _models(registry: Registry) -> list[type[Event]]:
    return [model for versions in registry.families().values() for model in versions]


def _compatibility(
    registry: Registry, model: type[Event], published: dict[str, Any], current: dict[str, Any]
) -> list[Problem]:
    """Breaking changes of `model` against its published schema, else changes needing a minor."""
    file, number = model.schema_file(), model.version
    breaking, additive = _differences(_fields(published), _fields(current))
    if breaking:
        this, next_ = f"v{number}", f"v{number + 1}"
        if registry.latest(model.event_type) is model:
            fix = f"publish {next_} with an upcaster from {this} instead of editing {this}"
        else:
            fix = f"put {this} back as published ({next_} exists; {this} is kept forever)"
        return [Problem(file, f"{text}; {fix}", "breaking") for text in breaking]
    published_minor = published.get("x-minor", 0)
    if additive and model.minor <= published_minor:
        fix = f"raise `minor` of {model.__name__} to {published_minor + 1}"
        return [
            Problem(file, f"{text} without a new minor version; {fix}", "unversioned")
            for text in additive
        ]
    return []


@dataclass(frozen=True, slots=True)
class _Field:
    """What one field accepts; its path is dotted, with `[]` for items and `{}` for map values."""

    parent: str | None
    required: bool
    kinds: frozenset[str]
    """JSON types, `null` included, a format in front (`date-time string`); `any` when open."""
    enum: frozenset[str] | None
    constraints: dict[tuple[str, str], Any]
    """Keyed by JSON type and keyword, e.g. `("string", "maxLength")`."""


def _fields(schema: dict[str, Any]) -> dict[str, _Field]:
    """Every field of a schema, parents before children, the root as `""`."""
    fields: dict[str, _Field] = {}
    _collect(schema, schema.get("$defs", {}), fields, "", None, required=True, seen=frozenset())
    return fields


def _collect(
    node: dict[str, Any],
    defs: dict[str, Any],
    fields: dict[str, _Field],
    path: str,
    parent: str | None,
    *,
    required: bool,
    seen: frozenset[int],
) -> None:
    variants = [_deref(variant, defs) for variant in _deref(node, defs).get("anyOf", [node])]
    concrete = [variant for variant in variants if variant.get("type") != "null"]
    fields[path] = _Field(
        parent=parent,
        required=required,
        kinds=frozenset(kind for variant in variants for kind in _kinds(variant)),
        enum=_enum(concrete),
        constraints={
            (kind.rsplit(" ", 1)[-1], keyword): variant[keyword]
            for variant in concrete
            for kind in _kinds(variant)
            for keyword in (*LOWER_BOUNDS, *UPPER_BOUNDS, *OPAQUE_CONSTRAINTS)
            if keyword in variant
        },
    )
    # A union of several shapes is compared by its variants' types only: they would share paths.
    if len(concrete) != 1 or id(concrete[0]) in seen:  # seen: a recursive model, already walked
        return
    shape, seen = concrete[0], seen | {id(concrete[0])}
    needed = set(shape.get("required", ()))
    for name, child in shape.get("properties", {}).items():
        child_path = f"{path}.{name}" if path else name
        _collect(child, defs, fields, child_path, path, required=name in needed, seen=seen)
    for suffix, child in (("[]", shape.get("items")), ("{}", shape.get("additionalProperties"))):
        if isinstance(child, dict):
            _collect(child, defs, fields, path + suffix, path, required=True, seen=seen)
    for index, child in enumerate(shape.get("prefixItems", [])):
        _collect(child, defs, fields, f"{path}[{index}]", path, required=True, seen=seen)


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _kinds(variant: dict[str, Any]) -> list[str]:
    types = variant.get("type", "any")
    prefix = f"{variant['format']} " if "format" in variant else ""
    return [prefix + kind for kind in (types if isinstance(types, list) else [types])]


def _enum(variants: list[dict[str, Any]]) -> frozenset[str] | None:
    values: set[str] = set()
    for variant in variants:
        if "enum" in variant:
            values.update(map(str, variant["enum"]))
        elif "const" in variant:
            values.add(str(variant["const"]))
        else:
            return None  # one unrestricted variant accepts any value
    return frozenset(values)


def _accepts(kinds: frozenset[str], kind: str) -> bool:
    """Whether a field of `kinds` accepts every value of `kind` (a dropped format widens)."""
    base = kind.rsplit(" ", 1)[-1]
    return bool({kind, base, "any"} & kinds) or (base == "integer" and "number" in kinds)


def _differences(
    before: dict[str, _Field], after: dict[str, _Field]
) -> tuple[list[str], list[str]]:
    """Breaking and additive changes from `before` to `after`, each one line naming its field."""
    breaking: list[str] = []
    additive: list[str] = []
    broken: set[str] = set()  # below a removed or retyped field, every change is the same one
    for path, old in before.items():
        new = after.get(path)
        if old.parent in broken:
            broken.add(path)
        elif new is None:
            breaking.append(f"field `{path}` was removed")
            broken.add(path)
        elif not all(_accepts(new.kinds, kind) for kind in old.kinds):
            breaking.append(
                f"field `{path}` changed type from {_show(old.kinds)} to {_show(new.kinds)}"
            )
            broken.add(path)
        else:
            if new.kinds != old.kinds:
                additive.append(
                    f"field `{path}` widened from {_show(old.kinds)} to {_show(new.kinds)}"
                )
            _compare_values(path, old, new, breaking, additive)
    for path, new in after.items():
        if path in before or new.parent in broken or new.parent not in before:
            continue  # a field inside a new or retyped field comes with its parent
        if new.required:
            breaking.append(f"new field `{path}` is required")
        else:
            additive.append(f"field `{path}` was added")
    return breaking, additive


def _compare_values(
    path: str, old: _Field, new: _Field, breaking: list[str], additive: list[str]
) -> None:
    """Requiredness, enum values and constraints of one field whose type still fits."""
    field = f"field `{path}`"
    if new.required != old.required:
        (breaking if new.required else additive).append(
            f"{field} became {'required' if new.required else 'optional'}"
        )
    if old.enum is not None and new.enum is not None:
        if old.enum - new.enum:
            breaking.append(f"{field} lost enum value(s) {_show(old.enum - new.enum)}")
        if new.enum - old.enum:
            additive.append(f"{field} gained enum value(s) {_show(new.enum - old.enum)}")
    elif new.enum is not None:
        breaking.append(f"{field} was limited to the enum values {_show(new.enum)}")
    elif old.enum is not None:
        additive.append(f"{field} is no longer limited to enum values")
    for key in sorted(old.constraints.keys() | new.constraints.keys()):
        was, now, keyword = old.constraints.get(key), new.constraints.get(key), key[1]
        if was == now:
            continue
        if now is None or (
            was is not None
            and keyword not in OPAQUE_CONSTRAINTS
            and (now < was if keyword in LOWER_BOUNDS else now > was)
        ):
            additive.append(f"{field} loosened `{keyword}` from {was} to {_unset(now)}")
        else:
            verb = "changed" if keyword in OPAQUE_CONSTRAINTS else "tightened"
            breaking.append(f"{field} {verb} `{keyword}` from {_unset(was)} to {now}")


def _show(values: frozenset[str]) -> str:
    return " or ".join(sorted(values))


def _unset(value: object) -> object:
    return "unset" if value is None else value
