from datetime import UTC, datetime
from decimal import Decimal

import httpx

from hub.core.errors import FailureClass, classify
from hub.core.handler import Decision
from hub.messages.cases import CaseOpenedV1
from hub.messages.common import Channel
from hub.messages.repair import CaseClosedV1, NotificationRequestedV1, QuoteIssuedV1
from intake.domain import decide
from lab.samples import sample_request
from notify.domain import Audience, plan
from notify.providers import message_id_for

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def opened_for(
    locale: str, channels: tuple[Channel, ...], email: str | None = None
) -> CaseOpenedV1:
    request = sample_request(1, now=NOW)
    customer = request.customer.model_copy(
        update={"locale": locale, "channels": channels, "email": email}
    )
    (emit,) = decide(request.model_copy(update={"customer": customer}), None, NOW).emits
    opened = emit.event
    assert isinstance(opened, CaseOpenedV1)
    return opened


def requests_of(decision: Decision[Audience]) -> list[NotificationRequestedV1]:
    found = [emit.event for emit in decision.emits]
    assert all(isinstance(event, NotificationRequestedV1) for event in found)
    return [event for event in found if isinstance(event, NotificationRequestedV1)]


def test_an_english_speaking_customer_gets_english_on_each_chosen_channel() -> None:
    opened = opened_for("en", (Channel.SMS, Channel.EMAIL), email="li@example.com")
    requests = requests_of(plan(opened, None, NOW))
    assert [(r.channel, r.address) for r in requests] == [
        (Channel.SMS, opened.customer.phone),
        (Channel.EMAIL, "li@example.com"),
    ]
    assert requests[0].body == f"Hello 李娜, your after-sales case {opened.case_id} is open."


def test_a_milestone_is_never_notified_twice_and_email_needs_an_address() -> None:
    opened = opened_for("zh-CN", (Channel.SMS, Channel.EMAIL))  # no e-mail address given
    first = plan(opened, None, NOW)
    assert [request.channel for request in requests_of(first)] == [Channel.SMS]
    quote = QuoteIssuedV1(case_id=opened.case_id, amount=Decimal("299.00"), issued_at=NOW)
    quoted = plan(quote, first.state, NOW)
    (message,) = requests_of(quoted)
    assert message.body == "李娜您好,该故障不在保修范围内,维修费用 ¥299.00,请在 App 内确认。"
    assert plan(quote, quoted.state, NOW).emits == ()
    closed = CaseClosedV1(case_id=opened.case_id, outcome="repaired", closed_at=NOW)
    assert plan(closed, None, NOW).emits == ()  # no case known: nobody to address


def test_a_refused_message_is_permanent_and_a_busy_gateway_transient() -> None:
    request = httpx.Request("POST", "http://sms.test/send")
    refused = httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(400, request=request)
    )
    busy = httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(503, request=request)
    )
    assert classify(refused) is FailureClass.PERMANENT
    assert classify(busy) is FailureClass.TRANSIENT


def test_message_ids_carry_the_dedupe_key_in_rfc_5322_form() -> None:
    assert message_id_for("AS1:opened:email") == "<AS1.opened.email@aftersales-hub>"
