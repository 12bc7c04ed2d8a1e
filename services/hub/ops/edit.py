"""Edit-and-replay: change fields of a dead letter's payload, and the diff for the audit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hub.messages.ops import FieldChange

if TYPE_CHECKING:
    from collections.abc import Mapping

MISSING = object()


def parse_assignment(text: str, *, as_json: bool = False) -> tuple[str, Any]:
    """`path.to.field=value`: the value as text, or parsed as JSON when `as_json`."""
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise ValueError(f"expected path=value, got {text!r}")
    return path, json.loads(raw) if as_json else raw


def apply_assignments(payload: dict[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `payload` with each dotted path set to its value (missing objects are created)."""
    edited: dict[str, Any] = json.loads(json.dumps(payload))
    for dotted, value in assignments.items():
        path = dotted.split(".")
        node = edited
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TypeError(f"{dotted}: {part} is not an object")
            node = child
        node[path[-1]] = value
    return edited


def diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:  # noqa: ANN401 - JSON
    """The changed leaves between two JSON documents, objects compared key by key."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in sorted({*before, *after}, key=str):
            sub = f"{path}.{key}" if path else str(key)
            changes += diff(before.get(key, MISSING), after.get(key, MISSING), sub)
        return changes
    if before == after and type(before) is type(after):
        return []
    return [
        FieldChange(
            path=path or "$",
            before=None if before is MISSING else before,
            after=None if after is MISSING else after,
        )
    ]
