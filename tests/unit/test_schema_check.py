"""The schema check catches every kind of breaking change, and stale, missing or orphan files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import pytest

from hub.core.registry import Event, Registry
from hub.core.schemas import check, export
from hub.messages import CATALOGUE

REPO_SCHEMAS = Path(__file__).parents[2] / "schemas"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Colour2(StrEnum):
    RED = "red"


class Part(Event):
    event_type: ClassVar[str] = "test.part"
    version: ClassVar[int] = 99
    serial: str


class PartRetyped(Event):
    event_type: ClassVar[str] = "test.part"
    version: ClassVar[int] = 99
    serial: int


def published(tmp_path: Path, model: type[Event]) -> Path:
    registry = Registry()
    registry.register(model)
    export(registry, tmp_path)
    return tmp_path


def problems_after(tmp_path: Path, model: type[Event]) -> list[str]:
    registry = Registry()
    registry.register(model)
    return [str(problem) for problem in check(registry, tmp_path)]


def widget(fields: dict[str, tuple[object, ...]], minor: int = 0) -> type[Event]:
    """A fresh `test.widget` v1 model: each field is (annotation,) or (annotation, default)."""
    namespace: dict[str, object] = {
        "__annotations__": {name: spec[0] for name, spec in fields.items()},
        "event_type": "test.widget",
        "version": 1,
        "minor": minor,
    }
    namespace.update({name: spec[1] for name, spec in fields.items() if len(spec) > 1})
    return type("Widget", (Event,), namespace)


BASE: dict[str, tuple[object, ...]] = {
    "name": (str,),
    "colour": (Colour,),
    "part": (Part,),
    "note": (str, ""),
}
PREFIX = "test.widget/v1.json: "
FIX = "; publish a new major version of test.widget.v1 with an upcaster instead of editing it"


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"name": None}, "field `name` was removed"),
        ({"name": (int,)}, "field `name` changed type from string to integer"),
        ({"part": (PartRetyped,)}, "field `part.serial` changed type from string to integer"),
        ({"colour": (Colour2,)}, "field `colour` lost enum value(s) blue"),
        ({"note": (str,)}, "field `note` became required"),
        ({"extra": (str,)}, "new field `extra` is required"),
    ],
)
def test_each_kind_of_breaking_change_is_caught(
    tmp_path: Path, changed: dict[str, tuple[object, ...] | None], expected: str
) -> None:
    published(tmp_path, widget(BASE))
    fields = {**BASE, **changed}
    model = widget({name: spec for name, spec in fields.items() if spec is not None})
    assert problems_after(tmp_path, model) == [PREFIX + expected + FIX]
    with pytest.raises(ValueError, match=r"was removed|changed type|lost enum|required"):
        export(_registry(model), tmp_path)


def _registry(model: type[Event]) -> Registry:
    registry = Registry()
    registry.register(model)
    return registry


def test_an_optional_field_is_fine_with_a_raised_minor_and_flagged_without(tmp_path: Path) -> None:
    published(tmp_path, widget(BASE))
    added: dict[str, tuple[object, ...]] = {**BASE, "extra": (str | None, None)}
    assert problems_after(tmp_path, widget(added)) == [
        PREFIX + "added `extra` without raising `minor` of test.widget.v1; raise it"
    ]
    assert problems_after(tmp_path, widget(added, minor=1)) == [
        PREFIX + "stale; run `hub schemas export`"
    ]
    assert export(_registry(widget(added, minor=1)), tmp_path) == ["test.widget/v1.json"]
    assert problems_after(tmp_path, widget(added, minor=1)) == []


def test_missing_and_orphan_files_are_reported(tmp_path: Path) -> None:
    assert problems_after(tmp_path, widget(BASE)) == [PREFIX + "missing; run `hub schemas export`"]
    (tmp_path / "old.family").mkdir()
    (tmp_path / "old.family" / "v1.json").write_text("{}")
    export(_registry(widget(BASE)), tmp_path)
    assert problems_after(tmp_path, widget(BASE)) == [
        "old.family/v1.json: no model produces this file; remove it or restore its model"
    ]


def test_a_refused_export_writes_nothing(tmp_path: Path) -> None:
    published(tmp_path, widget(BASE))
    before = (tmp_path / "test.widget" / "v1.json").read_text()
    broken: dict[str, tuple[object, ...]] = {**BASE, "name": (int,)}
    with pytest.raises(ValueError, match="changed type"):
        export(_registry(widget(broken)), tmp_path)
    assert (tmp_path / "test.widget" / "v1.json").read_text() == before


def test_the_committed_schemas_are_in_step_with_the_catalogue() -> None:
    assert [str(problem) for problem in check(CATALOGUE, REPO_SCHEMAS)] == []
