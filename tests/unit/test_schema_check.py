"""The schema check catches every kind of breaking change, and stale, missing or orphan files."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, create_model
from typer.testing import CliRunner

from hub.cli.schemas import schemas_app
from hub.core.registry import Event, Registry
from hub.core.schemas import Change, IncompatibleSchemaError, check, export, render_schema
from hub.messages import CATALOGUE
from hub.messages.common import Value

COMMITTED_SCHEMAS = Path(__file__).parents[2] / "schemas"
WIDGET_FILE = "test.widget/v1.json"
NEW_MAJOR = "; publish v2 with an upcaster from v1 instead of editing v1"
STALE = "stale: differs from what the model generates; run `hub schemas export`"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class RedOnly(StrEnum):
    RED = "red"


class ColourWithGreen(StrEnum):
    RED = "red"
    BLUE = "blue"
    GREEN = "green"


class Part(Value):
    serial: str


class PartWithNumericSerial(Value):
    serial: int


class PartWithBatch(Value):
    serial: str
    batch: str


class WidgetFamily(Event):
    event_type = "test.widget"
    version = 1


PUBLISHED: dict[str, Any] = {
    "name": str,
    "colour": Colour,
    "part": Part,
    "tags": (tuple[str, ...], ()),
    "note": (str | None, None),
    "code": Annotated[str, Field(max_length=20)],
    "due": date,
}


def widget(minor: int = 0, doc: str = "A throwaway event.", **changes: Any) -> type[Event]:
    """`test.widget` v1 as published, with `changes` applied (None removes a field)."""
    fields = {name: spec for name, spec in {**PUBLISHED, **changes}.items() if spec is not None}
    model = create_model("Widget", __base__=WidgetFamily, __doc__=doc, **fields)
    model.minor = minor
    return model


def registry_of(*models: type[Event]) -> Registry:
    registry = Registry()
    for model in models:
        registry.register(model)
    return registry


def texts(registry: Registry, directory: Path) -> list[str]:
    return [str(problem) for problem in check(registry, directory)]


def snapshot(directory: Path) -> dict[str, str]:
    return {str(path): path.read_text() for path in directory.rglob("*") if path.is_file()}


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A schema directory holding the published `test.widget` v1."""
    assert export(registry_of(widget()), tmp_path) == [Change(WIDGET_FILE, "created")]
    return tmp_path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": None}, "field `name` was removed"),
        ({"name": int}, "field `name` changed type from string to integer"),
        (
            {"part": PartWithNumericSerial},
            "field `part.serial` changed type from string to integer",
        ),
        ({"tags": (tuple[int, ...], ())}, "field `tags[]` changed type from string to integer"),
        ({"due": datetime}, "field `due` changed type from date string to date-time string"),
        ({"note": (str, "")}, "field `note` changed type from null or string to string"),
        ({"colour": RedOnly}, "field `colour` lost enum value(s) blue"),
        ({"note": str | None}, "field `note` became required"),
        ({"extra": str}, "new field `extra` is required"),
        ({"part": PartWithBatch}, "new field `part.batch` is required"),
        (
            {"code": Annotated[str, Field(max_length=10)]},
            "field `code` tightened `maxLength` from 20 to 10",
        ),
    ],
)
def test_each_kind_of_breaking_change_is_caught_and_export_refuses_it(
    published: Path, changes: dict[str, Any], expected: str
) -> None:
    edited = registry_of(widget(minor=1, **changes))  # a raised minor does not excuse a break
    assert texts(edited, published) == [f"{WIDGET_FILE}: {expected}{NEW_MAJOR}"]
    before = snapshot(published)
    with pytest.raises(IncompatibleSchemaError) as refused:
        export(edited, published)
    assert [problem.kind for problem in refused.value.problems] == ["breaking"]
    assert snapshot(published) == before


def test_a_field_removed_with_its_sub_model_is_one_problem(tmp_path: Path) -> None:
    export(registry_of(widget(spare=(Part | None, None))), tmp_path)
    assert texts(registry_of(widget()), tmp_path) == [
        f"{WIDGET_FILE}: field `spare` was removed{NEW_MAJOR}"
    ]


def test_editing_an_older_major_asks_to_restore_it(tmp_path: Path) -> None:
    class WidgetV2(WidgetFamily):
        version = 2

    export(registry_of(widget(), WidgetV2), tmp_path)
    assert texts(registry_of(widget(name=None), WidgetV2), tmp_path) == [
        (
            f"{WIDGET_FILE}: field `name` was removed; "
            "put v1 back as published (v2 exists; v1 is kept forever)"
        )
    ]


def test_an_optional_field_needs_a_raised_minor(published: Path) -> None:
    unversioned = registry_of(widget(extra=(str | None, None)))
    assert texts(unversioned, published) == [
        (
            f"{WIDGET_FILE}: field `extra` was added without a new minor version; "
            "raise `minor` of Widget to 1"
        )
    ]
    with pytest.raises(IncompatibleSchemaError, match="raise `minor` of Widget to 1"):
        export(unversioned, published)

    versioned = registry_of(widget(minor=1, extra=(str | None, None)))
    assert texts(versioned, published) == [f"{WIDGET_FILE}: {STALE}"]
    assert export(versioned, published) == [Change(WIDGET_FILE, "updated")]
    assert texts(versioned, published) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": ColourWithGreen}, "field `colour` gained enum value(s) green"),
        ({"name": (str, "")}, "field `name` became optional"),
        ({"name": str | int}, "field `name` widened from string to integer or string"),
        ({"code": str}, "field `code` loosened `maxLength` from 20 to unset"),
        # Only the new field itself: what its sub-model requires arrives with it.
        ({"spare": (Part | None, None)}, "field `spare` was added"),
    ],
)
def test_other_compatible_changes_need_a_raised_minor(
    published: Path, changes: dict[str, Any], expected: str
) -> None:
    assert texts(registry_of(widget(**changes)), published) == [
        f"{WIDGET_FILE}: {expected} without a new minor version; raise `minor` of Widget to 1"
    ]
    assert texts(registry_of(widget(minor=1, **changes)), published) == [f"{WIDGET_FILE}: {STALE}"]


def test_a_changed_description_is_only_stale(published: Path) -> None:
    assert texts(registry_of(widget(doc="Reworded.")), published) == [f"{WIDGET_FILE}: {STALE}"]


def test_missing_orphan_and_unreadable_files_are_reported(tmp_path: Path) -> None:
    registry = registry_of(widget())
    assert texts(registry, tmp_path) == [f"{WIDGET_FILE}: missing; run `hub schemas export`"]
    export(registry, tmp_path)
    (tmp_path / "test.gone").mkdir()
    (tmp_path / "test.gone" / "v1.json").write_text("{}")
    assert texts(registry, tmp_path) == [
        (
            "test.gone/v1.json: no model produces this file; restore its model "
            "(a published version is kept forever) or delete the file"
        )
    ]
    (tmp_path / WIDGET_FILE).write_text("{")
    assert texts(registry, tmp_path)[0].startswith(f"{WIDGET_FILE}: is not valid JSON (")


def test_a_refused_export_writes_no_file_at_all(published: Path) -> None:
    class GadgetV1(Event):
        event_type = "test.gadget"
        version = 1

    before = snapshot(published)
    with pytest.raises(IncompatibleSchemaError):
        export(registry_of(widget(name=None), GadgetV1), published)
    assert snapshot(published) == before  # not even the new, harmless gadget file


def test_a_recursive_model_is_walked_once(tmp_path: Path) -> None:
    class Node(Value):
        label: str
        children: tuple[Node, ...] = ()

    class TreeV1(Event):
        event_type = "test.tree"
        version = 1

        root: Node

    export(registry_of(TreeV1), tmp_path)
    assert texts(registry_of(TreeV1), tmp_path) == []


def test_render_schema_names_the_version() -> None:
    schema = render_schema(widget(minor=2))
    assert '"$id": "urn:aftersales-hub:schema:test.widget:1.2"' in schema
    assert '"$schema": "https://json-schema.org/draft/2020-12/schema"' in schema
    assert '"x-ce-type": "test.widget.v1"' in schema
    assert '"x-minor": 2' in schema
    assert schema.endswith("}\n")


def test_the_cli_fails_on_problems_and_passes_once_exported(tmp_path: Path) -> None:
    runner = CliRunner()
    failed = runner.invoke(schemas_app, ["check", "--dir", str(tmp_path)])
    assert failed.exit_code == 1
    assert "storefront.aftersales.requested/v2.json: missing; run `hub schemas export`" in (
        failed.output
    )
    assert runner.invoke(schemas_app, ["export", "--dir", str(tmp_path)]).exit_code == 0
    passed = runner.invoke(schemas_app, ["check", "--dir", str(tmp_path)])
    assert passed.exit_code == 0
    assert "OK" in passed.output


def test_the_committed_schemas_are_in_step_with_the_catalogue() -> None:
    assert texts(CATALOGUE, COMMITTED_SCHEMAS) == []
