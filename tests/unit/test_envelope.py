import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hub.core.envelope import Envelope, derive_event_id
from hub.core.errors import UndecodableError


def an_envelope() -> Envelope:
    return Envelope(
        id="evt-1",
        source="urn:storefront",
        type="storefront.aftersales.requested.v2",
        time=datetime(2026, 11, 24, 8, 30, tzinfo=UTC),
        subject="RQ-1",
        dataschema="urn:aftersales-hub:schema:storefront.aftersales.requested:2.0",
        correlation_id="corr-1",
        causation_id="cause-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


def test_headers_round_trip_every_attribute() -> None:
    envelope = an_envelope()
    headers = envelope.to_headers()
    assert [name for name, _ in headers] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_dataschema",
        "content-type",
        "ce_correlationid",
        "ce_causationid",
        "traceparent",
    ]
    assert Envelope.from_headers(headers) == envelope


def test_the_bare_extension_names_of_the_first_release_are_still_read() -> None:
    envelope = an_envelope()
    renamed = {"ce_correlationid": "correlationid", "ce_causationid": "causationid"}
    headers = [(renamed.get(name, name), value) for name, value in envelope.to_headers()]
    assert Envelope.from_headers(headers) == envelope


def test_derived_ids_are_deterministic_and_differ_by_role_id_and_source() -> None:
    shop, courier = "urn:shop", "urn:courier:sf"
    assert derive_event_id(shop, "evt-1", "case") == derive_event_id(shop, "evt-1", "case")
    assert derive_event_id(shop, "evt-1", "case") != derive_event_id(shop, "evt-1", "notify")
    assert derive_event_id(shop, "evt-1", "case") != derive_event_id(shop, "evt-2", "case")
    assert derive_event_id(shop, "evt-1", "case") != derive_event_id(courier, "evt-1", "case")


def test_caused_envelope_keeps_trace_and_time_and_points_at_its_cause() -> None:
    cause = an_envelope()
    hop = cause.hop_traceparent("intake")
    out = cause.caused(
        event_id="out-1",
        source="urn:hub/intake",
        type_="aftersales.case.opened.v1",
        dataschema="urn:x",
        subject="AS1",
        traceparent=hop,
    )
    assert (out.causation_id, out.correlation_id) == ("evt-1", "corr-1")
    assert out.time == cause.time
    assert out.traceparent == hop
    # The same trace, a span of its own, the same flags; and the same again on reprocessing.
    version, trace_id, span_id, flags = hop.split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert len(span_id) == 16
    assert span_id != "b7ad6b7169203331"
    assert cause.hop_traceparent("intake") == hop


def test_each_group_reading_an_event_is_a_hop_of_its_own() -> None:
    cause = an_envelope()
    spans = {cause.hop_traceparent(group).split("-")[2] for group in ("dispatch", "notify")}
    other_source = replace(cause, source="urn:elsewhere").hop_traceparent("dispatch")
    assert len({*spans, other_source.split("-")[2]}) == 3


@pytest.mark.parametrize(
    "parent",
    [
        None,
        "garbage",
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # W3C wants lower case
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # an invalid trace id
    ],
)
def test_a_hop_of_an_input_without_a_valid_traceparent_starts_a_trace(parent: str | None) -> None:
    cause = replace(an_envelope(), traceparent=parent)
    hop = cause.hop_traceparent("intake")
    version, trace_id, _, flags = hop.split("-")
    assert (version, flags) == ("00", "01")
    assert len(trace_id) == 32
    assert trace_id != "0" * 32
    # One new trace, derived from the input's id: the same on reprocessing and in every hop.
    assert replace(cause, source="urn:x").hop_traceparent("other").split("-")[1] == trace_id


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([], "missing CloudEvents headers: ce_specversion, ce_id, ce_source, ce_type, ce_time"),
        (
            [
                ("ce_specversion", b"0.3"),
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_time", b"2026-11-24T00:00:00+00:00"),
            ],
            "unsupported ce_specversion '0.3'",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"\xff"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_time", b"2026-11-24T00:00:00+00:00"),
            ],
            "header ce_id is not UTF-8",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_time", b"yesterday"),
            ],
            "ce_time is not RFC 3339: 'yesterday'",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("ce_time", b"2026-11-24T00:00:00"),
            ],
            "ce_time has no timezone",
        ),
    ],
)
def test_bad_headers_are_undecodable_with_a_clear_reason(
    headers: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(UndecodableError) as caught:
        Envelope.from_headers(headers)
    assert str(caught.value) == message


def test_from_record_reads_binary_mode_as_from_headers_does() -> None:
    envelope = an_envelope()
    assert Envelope.from_record(envelope.to_headers(), b'{"a": 1}') == (envelope, b'{"a": 1}')


def test_from_record_reads_structured_mode_into_the_same_envelope() -> None:
    envelope = an_envelope()
    structured = {
        "specversion": "1.0",
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "time": envelope.time.isoformat(),
        "subject": envelope.subject,
        "dataschema": envelope.dataschema,
        "datacontenttype": "application/json",
        "correlationid": envelope.correlation_id,
        "causationid": envelope.causation_id,
        "traceparent": envelope.traceparent,
        "data": {"a": 1},
    }
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    read, data = Envelope.from_record(headers, json.dumps(structured).encode())
    assert read == envelope
    assert json.loads(data) == {"a": 1}


def test_a_structured_batch_format_is_refused_by_name() -> None:
    headers = [("content-type", b"application/cloudevents-batch+json")]
    with pytest.raises(UndecodableError, match="cloudevents-batch"):
        Envelope.from_record(headers, b"[]")
