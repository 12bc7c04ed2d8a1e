import json

import pytest

from hub.core.errors import SchemaViolationError, UndecodableError, UnknownEventTypeError
from hub.core.registry import Event, Registry
from hub.messages import CATALOGUE
from hub.messages.storefront import AfterSalesRequestedV1, AfterSalesRequestedV3
from lab.samples import sample_request_v1, sample_request_v2


def test_v1_request_is_decoded_as_v3_through_the_upcasters() -> None:
    v1 = sample_request_v1(7)
    event = CATALOGUE.decode(v1.ce_type(), v1.to_bytes())
    assert isinstance(event, AfterSalesRequestedV3)
    assert event.trusted_customer is False
    assert event.freight_insurance is None
    assert event.fault.code == "unspecified"
    assert event.fault.description == v1.fault_description
    assert event.request_id == v1.request_id


def test_v2_request_is_decoded_as_an_untrusted_uninsured_v3() -> None:
    v2 = sample_request_v2(3)
    event = CATALOGUE.decode(v2.ce_type(), v2.to_bytes())
    assert isinstance(event, AfterSalesRequestedV3)
    assert event.model_dump(exclude={"trusted_customer", "freight_insurance"}) == v2.model_dump()
    assert (event.trusted_customer, event.freight_insurance) == (False, None)


def test_unknown_fields_from_a_newer_minor_are_tolerated() -> None:
    v1 = sample_request_v1(1)
    body = json.loads(v1.to_bytes())
    body["loyalty_tier"] = "gold"
    event = CATALOGUE.decode(v1.ce_type(), json.dumps(body).encode())
    assert isinstance(event, AfterSalesRequestedV3)


def test_unknown_version_and_type_are_named_in_the_error() -> None:
    with pytest.raises(
        UnknownEventTypeError,
        match=r"of storefront\.aftersales\.requested: v9 \(this code knows v1, v2, v3\)",
    ):
        CATALOGUE.model_for("storefront.aftersales.requested.v9")
    with pytest.raises(UnknownEventTypeError, match=r"unknown event type 'parcel\.teleported\.v1'"):
        CATALOGUE.model_for("parcel.teleported.v1")


def test_invalid_payloads_say_which_field_is_wrong() -> None:
    with pytest.raises(SchemaViolationError, match=r"request_id: Field required"):
        CATALOGUE.decode(AfterSalesRequestedV1.ce_type(), b'{"order_id": "x"}')
    with pytest.raises(UndecodableError, match="body is not JSON"):
        CATALOGUE.decode(AfterSalesRequestedV1.ce_type(), b'{"order_id": ')
    with pytest.raises(UndecodableError, match="body is JSON list, not an object"):
        CATALOGUE.decode(AfterSalesRequestedV1.ce_type(), b"[]")


def test_check_rejects_a_missing_upcaster_and_a_version_gap() -> None:
    registry = Registry()

    @registry.register
    class ThingV1(Event):
        event_type = "thing"
        version = 1

    @registry.register
    class ThingV2(Event):
        event_type = "thing"
        version = 2

    with pytest.raises(ValueError, match="thing: no upcaster from v1 to v2"):
        registry.check()

    gap = Registry()

    @gap.register
    class GapV3(Event):
        event_type = "gap"
        version = 3

    with pytest.raises(ValueError, match=r"gap: versions \[3\] are not 1..3"):
        gap.check()


def test_an_upcaster_must_go_to_the_next_version_of_the_same_family() -> None:
    registry = Registry()

    class AV1(Event):
        event_type = "a"
        version = 1

    class BV2(Event):
        event_type = "b"
        version = 2

    with pytest.raises(ValueError, match="from one version to the next"):
        registry.upcaster(AV1, BV2)


def test_an_event_body_is_what_model_dump_json_writes() -> None:
    request = sample_request_v1(7)
    upcast = CATALOGUE.upcast(request)
    for event in (request, upcast):
        assert event.to_bytes() == event.model_dump_json().encode()
    assert not request.to_bytes().isascii()  # text as UTF-8, not escaped
