"""Message templates per milestone, in zh-CN and en; fields come from the case and the event."""

from __future__ import annotations

from typing import NamedTuple


class Template(NamedTuple):
    """Subject (e-mail, push title) and body."""

    subject: str
    body: str


TEMPLATES: dict[str, dict[str, Template]] = {
    "opened": {
        "zh-CN": Template("售后申请已受理", "{name}您好,您的售后申请已受理,服务单号 {case_id}。"),
        "en": Template(
            "Request accepted", "Hello {name}, your after-sales case {case_id} is open."
        ),
    },
    "pickup_scheduled": {
        "zh-CN": Template(
            "已预约上门取件", "{name}您好,{courier} 将上门取件,运单号 {waybill_no}。"
        ),
        "en": Template(
            "Pickup booked", "Hello {name}, {courier} will collect the item, waybill {waybill_no}."
        ),
    },
    "picked_up": {
        "zh-CN": Template("快递员已取件", "{name}您好,您的商品已被取走,正送往维修中心。"),
        "en": Template(
            "Item collected", "Hello {name}, your item is on its way to the repair center."
        ),
    },
    "received": {
        "zh-CN": Template("维修中心已签收", "{name}您好,维修中心已收到您的商品,即将检测。"),
        "en": Template("Item received", "Hello {name}, the repair center received your item."),
    },
    "quote": {
        "zh-CN": Template(
            "维修报价待确认", "{name}您好,该故障不在保修范围内,维修费用 ¥{amount},请在 App 内确认。"
        ),
        "en": Template(
            "Repair quote",
            "Hello {name}, the repair is not covered; it costs ¥{amount}. Please answer in the app.",
        ),
    },
    "repaired": {
        "zh-CN": Template("维修已完成", "{name}您好,您的商品处理完毕,即将寄回。"),
        "en": Template(
            "Work completed", "Hello {name}, the work is done and your item will be sent back."
        ),
    },
    "refunded": {
        "zh-CN": Template("已申请退款", "{name}您好,我们已为您申请退款 ¥{amount},将原路退回。"),
        "en": Template("Refund requested", "Hello {name}, a refund of ¥{amount} is on its way."),
    },
    "replaced": {
        "zh-CN": Template("已为您换新", "{name}您好,我们将为您寄出一台新机。"),
        "en": Template("Replacement issued", "Hello {name}, a new unit is on its way to you."),
    },
    "delivered_back": {
        "zh-CN": Template("商品已送达", "{name}您好,您的商品已送达,请查收。"),
        "en": Template("Delivered", "Hello {name}, your item has been delivered."),
    },
    "freight_claim_approved": {
        "zh-CN": Template(
            "退货运费险已理赔",
            "{name}您好,您的退货运费险已理赔 ¥{paid}(运单 {waybill_no}),将由保险公司打款给您。",
        ),
        "en": Template(
            "Return shipping refunded",
            "Hello {name}, your return-shipping insurance pays ¥{paid} for waybill {waybill_no}.",
        ),
    },
    "freight_claim_rejected": {
        "zh-CN": Template("退货运费险理赔未通过", "{name}您好,您的退货运费险理赔未通过:{reason}。"),
        "en": Template(
            "Return shipping claim declined",
            "Hello {name}, the insurer declined the return-shipping claim ({reason_code}): {reason}.",
        ),
    },
    "closed": {
        "zh-CN": Template("服务已完成", "{name}您好,服务单 {case_id} 已完成,欢迎评价。"),
        "en": Template(
            "Case closed", "Hello {name}, case {case_id} is closed. We would love your rating."
        ),
    },
}
DEFAULT_LOCALE = "zh-CN"


def render(milestone: str, locale: str, fields: dict[str, object]) -> Template:
    """The message of `milestone` in `locale` (zh-CN when that locale has no template)."""
    by_locale = TEMPLATES[milestone]
    template = by_locale.get(locale, by_locale[DEFAULT_LOCALE])
    return Template(template.subject.format_map(fields), template.body.format_map(fields))
