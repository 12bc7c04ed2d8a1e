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
    "parts_shortage": {
        "zh-CN": Template(
            "维修备件缺货",
            "{name}您好,维修所需备件暂时缺货,预计 {expected_on} 到货,到货后将立即为您维修。",
        ),
        "en": Template(
            "Waiting for spare parts",
            "Hello {name}, a spare part for your repair is out of stock; it is expected on {expected_on}, and the repair resumes as soon as it arrives.",
        ),
    },
    "parts_arrived": {
        "zh-CN": Template("备件已到货", "{name}您好,维修所需备件已到货,维修中心正在为您维修。"),
        "en": Template(
            "Spare parts arrived",
            "Hello {name}, the spare parts have arrived and the repair center is repairing your item.",
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
    "express_refunded": {
        "zh-CN": Template(
            "极速退款已到账",
            "{name}您好,快递员已取件,我们已为您办理极速退款 ¥{amount},无需等待仓库验收,"
            "将原路退回。",
        ),
        "en": Template(
            "Express refund",
            "Hello {name}, the courier has your parcel: an express refund of ¥{amount} is on "
            "its way, without waiting for the inspection.",
        ),
    },
    "refund_clawback": {
        "zh-CN": Template(
            "极速退款需退回",
            "{name}您好,维修中心验收发现商品与订单不符(序列号不符或人为损坏),"
            "已发起极速退款 ¥{amount} 的追回,客服将与您联系。",
        ),
        "en": Template(
            "Express refund taken back",
            "Hello {name}, the repair center found the item does not match the order (another "
            "serial number, or damage). The express refund of ¥{amount} is being taken back; "
            "our service team will contact you.",
        ),
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
    "transit_damage": {
        "zh-CN": Template(
            "商品运输损坏",
            "{name}您好,维修中心签收时发现您的商品在运输途中受损(运输损坏)。"
            "我们已向承运快递发起理赔,专人将尽快联系您处理,服务单号 {case_id}。",
        ),
        "en": Template(
            "Item damaged in transit",
            "Hello {name}, the repair center found your item damaged in transit. We have "
            "claimed against the courier and will contact you shortly about case {case_id}.",
        ),
    },
}
DEFAULT_LOCALE = "zh-CN"


def render(milestone: str, locale: str, fields: dict[str, object]) -> Template:
    """The message of `milestone` in `locale` (zh-CN when that locale has no template)."""
    by_locale = TEMPLATES[milestone]
    template = by_locale.get(locale, by_locale[DEFAULT_LOCALE])
    return Template(template.subject.format_map(fields), template.body.format_map(fields))
