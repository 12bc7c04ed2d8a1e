"""Realistic sample storefront requests for the demo, tests and benchmarks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hub.messages.common import (
    Address,
    Customer,
    Fault,
    FreightInsurance,
    Item,
    RequestType,
    TimeWindow,
)
from hub.messages.storefront import (
    AfterSalesRequestedV1,
    AfterSalesRequestedV2,
    AfterSalesRequestedV3,
)

_CUSTOMERS = (
    (
        "张伟",
        "13800138000",
        Address(
            province="浙江省",
            city="杭州市",
            district="西湖区",
            street="文三路 478 号华星时代广场 A 座 1201",
        ),
    ),
    (
        "李娜",
        "13912345678",
        Address(
            province="广东省", city="深圳市", district="南山区", street="科技园南区高新南七道 12 号"
        ),
    ),
    (
        "王芳",
        "13700001111",
        Address(
            province="北京市",
            city="北京市",
            district="朝阳区",
            street="建国路 88 号 SOHO 现代城 5 号楼 2308",
        ),
    ),
)
_ITEMS = (
    (
        "SKU-PHONE-001",
        "旗舰手机 256GB",
        "phone",
        Decimal("4999.00"),
        "screen_flicker",
        "屏幕偶尔闪烁,重启后恢复,最近越来越频繁。",
    ),
    (
        "SKU-LAPTOP-002",
        "轻薄笔记本 14 英寸",
        "laptop",
        Decimal("6999.00"),
        "no_power",
        "电脑无法开机,充电指示灯不亮。",
    ),
    ("SKU-KETTLE-003", "电热水壶 1.7L", "small_appliance", Decimal("199.00"), "leak", "壶底漏水。"),
)


def sample_request_v2(
    number: int, *, now: datetime | None = None, request_type: RequestType = RequestType.REPAIR
) -> AfterSalesRequestedV2:
    """The `number`-th sample request, in the current shape (v2)."""
    now = now or datetime.now(UTC)
    name, phone, address = _CUSTOMERS[number % len(_CUSTOMERS)]
    sku, title, category, price, fault_code, description = _ITEMS[number % len(_ITEMS)]
    pickup_start = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return AfterSalesRequestedV2(
        request_id=f"RQ-{number:08d}",
        order_id=f"OD-{number:08d}",
        order_item_id=f"OI-{number:08d}-1",
        request_type=request_type,
        customer=Customer(customer_id=f"C-{number % 97:05d}", name=name, phone=phone),
        address=address,
        item=Item(
            sku=sku,
            title=title,
            category=category,
            serial_number=f"SN{number:010d}",
            purchase_date=(now - timedelta(days=90)).date(),
            price=price,
        ),
        fault=Fault(code=fault_code, description=description),
        requested_at=now,
        pickup_window=TimeWindow(start=pickup_start, end=pickup_start + timedelta(hours=9)),
    )


def sample_request(
    number: int,
    *,
    now: datetime | None = None,
    request_type: RequestType = RequestType.REPAIR,
    trusted_customer: bool = False,
    freight_insurance: FreightInsurance | None = None,
) -> AfterSalesRequestedV3:
    """The `number`-th sample request in the newest shape (v3): trust and freight insurance."""
    current = sample_request_v2(number, now=now, request_type=request_type)
    return AfterSalesRequestedV3(
        **dict(current),
        trusted_customer=trusted_customer,
        freight_insurance=freight_insurance,
    )


def sample_request_v1(number: int, *, now: datetime | None = None) -> AfterSalesRequestedV1:
    """The `number`-th sample request in the first published shape (v1), for upcasting."""
    current = sample_request_v2(number, now=now)
    return AfterSalesRequestedV1(
        request_id=current.request_id,
        order_id=current.order_id,
        order_item_id=current.order_item_id,
        request_type=current.request_type,
        customer=current.customer,
        address=current.address,
        item=current.item,
        fault_description=current.fault.description,
        requested_at=current.requested_at,
    )


def expired_purchase() -> date:
    """A purchase date whose warranty ended long ago."""
    return date(2019, 1, 15)
