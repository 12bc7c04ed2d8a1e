"""What the fault suite's report says about cases that never ended."""

from datetime import UTC, datetime
from pathlib import Path

from hub.core.outbound import event_record
from hub.core.registry import Event
from hub.core.store.base import KafkaRecord
from hub.messages.cases import CaseExceptionRaisedV1
from hub.messages.courier import CourierOrderAcceptedV1, PickupCancelRequestedV1
from hub.messages.repair import CaseClosedV1
from lab.chaos import LAST_WORDS, ChaosReport, Ledger, last_words


def test_the_last_log_lines_naming_a_case_that_never_ended_are_quoted(tmp_path: Path) -> None:
    (tmp_path / "dispatch#0.log").write_text(
        "".join(f'{{"event": "message_handled", "case_id": "AS1", "n": {n}}}\n' for n in range(9))
        + '{"event": "message_handled", "case_id": "AS2"}\n'
    )
    (tmp_path / "repair#0.log").write_text('{"event": "message_parked", "case_id": "AS1"}\n')

    quoted = last_words(tmp_path, ["AS1"])

    assert len(quoted) == LAST_WORDS
    assert quoted[-1] == '  repair#0: {"event": "message_parked", "case_id": "AS1"}'
    assert all("AS1" in line for line in quoted)
    assert '"n": 5' in quoted[0]  # the last ones, the services' logs read in name order


def test_the_report_names_unended_cases_and_dead_letters() -> None:
    report = ChaosReport(cases=3)
    report.ended.update(closed=2)
    report.unended = {"AS9": "aftersales.pickup.requested.v1"}
    report.dead_letters.update({"courier.jd.events.dispatch.dlq": 2})

    lines = report.lines()

    assert "lost                  1" in lines
    assert "never ended           1 by last event {'aftersales.pickup.requested.v1': 1}" in lines
    assert "  cases: AS9@aftersales.pickup.requested.v1" in lines
    assert "dead letters          2 {'courier.jd.events.dispatch.dlq': 2}" in lines


def courier_record(topic: str, event: Event, offset: int) -> KafkaRecord:
    produced = event_record(topic, event, key="case", source="urn:courier:test")
    return KafkaRecord(topic, 0, offset, 0, produced.key, produced.value, produced.headers)


def test_a_leg_two_couriers_took_counts_unless_the_hub_withdrew_one() -> None:
    # One order id at two couriers (a choice redone after a crash): both accepted, nothing
    # withdrawn, so both come. On another case the late acceptance was withdrawn: one comes.
    report = ChaosReport(cases=2)
    ledger = Ledger(report, couriers=["jd", "sf"])
    assert {"courier.jd.events", "courier.sf.pickup-orders"} <= set(ledger.topics)
    records = [
        ("courier.sf.events", accepted("AS1-inbound-1", "AS1")),
        ("courier.jd.events", accepted("AS1-inbound-1", "AS1")),
        ("courier.jd.events", accepted("AS2-inbound-1", "AS2")),
        ("courier.sf.events", accepted("AS2-inbound-2", "AS2")),
        ("courier.sf.pickup-orders", PickupCancelRequestedV1(
            order_id="AS2-inbound-2", case_id="AS2", reason="another courier accepted first",
        )),
    ]  # fmt: skip
    for offset, (topic, event) in enumerate(records):
        ledger.take(courier_record(topic, event, offset))
    ledger.settle()

    assert report.couriers_of_leg == {("AS1", "inbound"): {"jd", "sf"}, ("AS2", "inbound"): {"jd"}}
    assert report.legs_with_two_couriers == 1
    assert "pickup legs accepted  0, duplicated 0, taken by two couriers 1" in report.lines()


def accepted(order_id: str, case_id: str) -> CourierOrderAcceptedV1:
    return CourierOrderAcceptedV1(
        order_id=order_id, case_id=case_id, waybill_no="W1", accepted_at=datetime.now(UTC)
    )


def test_cases_left_in_exception_are_counted_by_code_with_their_reasons() -> None:
    report = ChaosReport(cases=3)
    ledger = Ledger(report)
    for case in ("AS1", "AS2", "AS3"):
        ledger.offer(case)
    raised = [
        ("AS1", "no_courier_left", "every eligible courier failed; the last: jd (capacity)"),
        ("AS2", "no_courier", "no courier covers 西藏 for phone worth ¥99"),
        ("AS3", "no_courier_left", "every eligible courier failed; the last: sf (timeout)"),
    ]
    for offset, (case, code, reason) in enumerate(raised):
        exception = CaseExceptionRaisedV1(
            case_id=case, code=code, reason=reason, raised_at=datetime.now(UTC)
        )
        ledger.take(case_record(exception, case, offset))
    assert ledger.all_settled  # each ended or raised: the run need not wait for them
    # Late news of a raised case (an order withdrawn meanwhile) leaves it in exception.
    ledger.take(case_record(accepted("AS2-inbound-2", "AS2"), "AS2", 3))
    assert ledger.all_settled
    ledger.take(
        case_record(
            CaseClosedV1(case_id="AS3", outcome="repaired", closed_at=datetime.now(UTC)), "AS3", 4
        )
    )
    assert ledger.all_settled
    assert not ledger.all_ended.is_set()
    ledger.settle()

    lines = report.lines()
    assert "lost                  0" in lines  # went to an operator: not lost
    assert "for a person          2 (raised to an operator, never closed)" in lines
    assert (
        "never ended           2 by last event "
        "{'aftersales.case.exception.v1': 1, 'courier.order.accepted.v1': 1}"
    ) in lines
    assert "  in exception by code {'no_courier_left': 1, 'no_courier': 1}" in lines
    assert "  reason: no_courier: no courier covers 西藏 for phone worth ¥99" in lines
    assert not any("sf (timeout)" in line for line in lines)  # AS3 closed after its exception


def case_record(event: Event, case: str, offset: int) -> KafkaRecord:
    produced = event_record("aftersales.cases", event, key=case, source="urn:test", subject=case)
    return KafkaRecord("aftersales.cases", 0, offset, 0, produced.key, produced.value,
                       produced.headers)  # fmt: skip


def test_a_case_in_transit_at_the_end_is_shown_with_its_last_records() -> None:
    report = ChaosReport(cases=1)
    ledger = Ledger(report, couriers=["sf"])
    ledger.offer("AS1")
    ledger.take(case_record(accepted("AS1-outbound-1", "AS1"), "AS1", 0))
    cancel = PickupCancelRequestedV1(order_id="AS1-outbound-1", case_id="AS1", reason="late")
    ledger.take(courier_record("courier.sf.pickup-orders", cancel, 1))
    ledger.settle()

    (line,) = [line for line in report.lines() if "last records" in line]
    assert line.startswith("  AS1 last records: aftersales.cases courier.order.accepted.v1 @")
    assert "| courier.sf.pickup-orders courier.pickup.cancel-requested.v1 @" in line
