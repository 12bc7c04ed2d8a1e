"""The registry reads a body straight from its bytes: the same event, or the same error, as ever.

`Registry.decode` validates with pydantic's JSON mode and, when that refuses, reads the body
again through `json.loads` and validates the objects. Hypothesis writes bodies the two ways
could read differently (numbers spelled every way JSON allows, the float edge cases, big
integers, lone surrogates, duplicate names, a byte order mark, control characters, random
byte damage) and compares the outcome with the objects' way alone.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.core.errors import SchemaViolationError, UndecodableError
from hub.core.registry import _decode_objects
from hub.messages import CATALOGUE
from lab.samples import sample_request_v1, sample_request_v2

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.core.registry import Event

NUMBERS = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from([
        "NaN", "Infinity", "-Infinity", "1e400", "-0", "-0.0", "0.0", "100.0", "1e2", "1E+2",
        "1" + "0" * 4400, "5e-324", "01", "1.", ".5", "+1", "0x10", '"100.0"', '"1e2"',
    ]),
)  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.sampled_from(['"\\ud800 lone"', '"\\udfff"', '"tab\tin"', '"\\u0000"', '"\x01"', '"\\x"']),
)
JSON_TEXT = st.recursive(
    NUMBERS | TEXTS | st.sampled_from(["true", "false", "null", "[]", "{}"]),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]")
        | st.dictionaries(st.sampled_from(["a", "b", "a"]), inner, max_size=2).map(
            lambda d: "{" + ", ".join(f'"{k}": {v}' for k, v in d.items()) + "}"
        )
    ),
    max_leaves=6,
)
FIELDS = st.sampled_from([
    ("item", "price"), ("item", "purchase_date"), ("customer", "phone"), ("request_type",),
    ("customer", "channels"), ("pickup_window", "start"), ("requested_at",), ("item", "sku"),
])  # fmt: skip


def _with_raw(document: dict[str, object], path: tuple[str, ...], raw: str) -> str:
    """`document` as JSON text, the value at `path` replaced by the text `raw` as it is."""
    marker = "\u2603marker\u2603"
    node: dict[str, object] = document
    for name in path[:-1]:
        child = node.get(name)
        if not isinstance(child, dict):
            return json.dumps(document, ensure_ascii=False)
        node = child
    node[path[-1]] = marker
    text = json.dumps(document, ensure_ascii=False)
    return text.replace(json.dumps(marker, ensure_ascii=False), raw)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A storefront request (v1 or v2) written with the odd spellings above, maybe damaged."""
    number = draw(st.integers(min_value=1, max_value=10**6))
    event: Event = (sample_request_v2 if draw(st.booleans()) else sample_request_v1)(number)
    document = event.model_dump(mode="json")
    text = _with_raw(document, draw(FIELDS), draw(JSON_TEXT))
    if draw(st.booleans()):
        text = text[:-1] + f', "x_extra": {draw(JSON_TEXT)}}}'
    if draw(st.booleans()):  # the same name twice: the last wins
        text = '{"request_id": 7, ' + text[1:]
    body = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        body = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b" \n"])) + body
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    return event.ce_type(), body


def _outcome(read: Callable[[], Event]) -> tuple[str, object]:
    try:
        event = read()
    except (UndecodableError, SchemaViolationError) as error:
        return type(error).__name__, str(error)
    return "event", (type(event), event, event.to_bytes())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_a_body_reads_the_same_from_bytes_as_through_json_loads(case: tuple[str, bytes]) -> None:
    ce_type, body = case
    model = CATALOGUE.model_for(ce_type)
    expected = _outcome(lambda: CATALOGUE.upcast(_decode_objects(model, ce_type, body)))
    assert _outcome(lambda: CATALOGUE.decode(ce_type, body)) == expected


def test_a_price_written_as_a_json_number_reads_as_it_always_did() -> None:
    document = sample_request_v2(1).model_dump(mode="json")
    for raw, price in [("100.0", "100.0"), ("1e2", "100.0"), ("12.30", "12.3"), ("7", "7")]:
        text = _with_raw(document, ("item", "price"), raw)
        event = CATALOGUE.decode(sample_request_v2(1).ce_type(), text.encode())
        assert str(event.item.price) == price  # type: ignore[attr-defined]
