"""Versioned, frozen event models and the chain of upcasters that brings old versions forward."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from hub.core.errors import SchemaViolationError, UndecodableError, UnknownEventTypeError

if TYPE_CHECKING:
    from collections.abc import Callable


class Event(BaseModel):
    """Base of every message body: frozen, and tolerant of fields added by newer minor versions."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    """Family name shared by every version, e.g. `aftersales.case.opened`."""
    version: ClassVar[int]
    """Major version: a breaking change makes a new class and an upcaster."""
    minor: ClassVar[int] = 0
    """Additive changes (new optional fields) raise the minor version only."""

    @classmethod
    def ce_type(cls) -> str:
        """The `ce_type` header: family and major version."""
        return f"{cls.event_type}.v{cls.version}"

    @classmethod
    def dataschema(cls) -> str:
        """The `ce_dataschema` header: names the exact schema file including the minor version."""
        return f"urn:aftersales-hub:schema:{cls.event_type}:{cls.version}.{cls.minor}"

    @classmethod
    def schema_file(cls) -> str:
        """Path of this version's JSON Schema below `schemas/`."""
        return f"{cls.event_type}/v{cls.version}.json"

    def to_bytes(self) -> bytes:
        """The JSON body, deterministic for equal models (what `model_dump_json` writes)."""
        # The serializer's bytes as they are: model_dump_json decodes them to text.
        return self.__pydantic_serializer__.to_json(self)


EventT = TypeVar("EventT", bound=Event)


class Registry:
    """Every published version of every event family, and how to upcast each to the latest."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Event]] = {}
        self._families: dict[str, dict[int, type[Event]]] = defaultdict(dict)
        self._upcasters: dict[type[Event], Callable[[Any], Event]] = {}

    def register(self, model: type[EventT]) -> type[EventT]:
        """Register one version (usable as a class decorator)."""
        ce_type = model.ce_type()
        if ce_type in self._by_type:
            raise ValueError(f"{ce_type} is registered twice")
        self._by_type[ce_type] = model
        self._families[model.event_type][model.version] = model
        return model

    def upcaster(
        self, source: type[EventT], target: type[Event]
    ) -> Callable[[Callable[[EventT], Event]], Callable[[EventT], Event]]:
        """Register the function that turns `source` (version N) into `target` (version N+1)."""
        if source.event_type != target.event_type or target.version != source.version + 1:
            raise ValueError(
                f"an upcaster goes from one version to the next of one family: "
                f"{source.ce_type()} -> {target.ce_type()}"
            )

        def decorate(function: Callable[[EventT], Event]) -> Callable[[EventT], Event]:
            self._upcasters[source] = function
            return function

        return decorate

    def check(self) -> None:
        """Fail at start-up when a family has a gap in its versions or a missing upcaster."""
        for family, versions in self._families.items():
            expected = list(range(1, max(versions) + 1))
            if sorted(versions) != expected:
                raise ValueError(
                    f"{family}: versions {sorted(versions)} are not 1..{max(versions)}"
                )
            for number in expected[:-1]:
                if versions[number] not in self._upcasters:
                    raise ValueError(f"{family}: no upcaster from v{number} to v{number + 1}")

    def families(self) -> dict[str, list[type[Event]]]:
        """Every family with its versions in order."""
        return {
            family: [versions[number] for number in sorted(versions)]
            for family, versions in sorted(self._families.items())
        }

    def family_of(self, ce_type: str) -> str | None:
        """The family of a `ce_type` this code knows, or None."""
        model = self._by_type.get(ce_type)
        return model.event_type if model is not None else None

    def model_for(self, ce_type: str) -> type[Event]:
        """The model of one `ce_type`; UnknownEventTypeError when this code does not know it."""
        try:
            return self._by_type[ce_type]
        except KeyError:
            family, _, version = ce_type.rpartition(".v")
            if family in self._families and version.isdigit():
                known = ", ".join(f"v{number}" for number in sorted(self._families[family]))
                raise UnknownEventTypeError(
                    f"unknown version of {family}: v{version} (this code knows {known})"
                ) from None
            raise UnknownEventTypeError(f"unknown event type {ce_type!r}") from None

    def latest(self, event_type: str) -> type[Event]:
        """The newest version of a family."""
        versions = self._families[event_type]
        return versions[max(versions)]

    def upcast(self, event: Event) -> Event:
        """Bring `event` to the latest version of its family through the upcaster chain."""
        while type(event) in self._upcasters:
            event = self._upcasters[type(event)](event)
        return event

    def decode(self, ce_type: str, body: bytes) -> Event:
        """Validate `body` as the version `ce_type` names, then upcast it to the latest version."""
        model = self.model_for(ce_type)
        try:
            # Straight from the bytes: half the cost of json.loads and validating its objects.
            event = model.model_validate_json(body)
        except ValidationError:
            # Read again the standard library's way, which decides what is wrong and how it
            # is said (its JSON errors, digit limit and lone surrogates are not pydantic's).
            event = _decode_objects(model, ce_type, body)
        return self.upcast(event)


def _decode_objects(model: type[Event], ce_type: str, body: bytes) -> Event:
    """`body` through `json.loads`, then validated as `model`; the errors the hub reports."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        # Not only JSONDecodeError: invalid UTF-8, an integer past the digit limit
        # (ValueError) and deep nesting (RecursionError) are the bytes' fault as well.
        raise UndecodableError(f"body is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise UndecodableError(f"body is JSON {type(data).__name__}, not an object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SchemaViolationError(
            f"{ce_type} payload is invalid: {error.error_count()} error(s): "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from error
