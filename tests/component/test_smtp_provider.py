"""The e-mail provider against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiosmtpd.controller import Controller

from hub.messages.common import Channel
from hub.messages.repair import NotificationRequestedV1
from lab.harness.kafka import free_port
from notify.providers import SmtpProvider, message_id_for

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

AT_ONCE = 8
"""More e-mails than the event loop's default thread pool has threads on a 2-core machine."""


class Gathering:
    """Accepts a message only once AT_ONCE conversations are open at the same time."""

    def __init__(self) -> None:
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        del server, session, envelope
        self.arrived += 1
        if self.arrived >= AT_ONCE:
            self.all_here.set()
        try:
            await asyncio.wait_for(self.all_here.wait(), timeout=5)
        except TimeoutError:
            return "451 only some arrived together"
        return "250 Message accepted for delivery"


def request(number: int) -> NotificationRequestedV1:
    return NotificationRequestedV1(
        dedupe_key=f"c{number}:picked_up:email", case_id=f"c{number}", milestone="picked_up",
        channel=Channel.EMAIL, address=f"user{number}@example.com", locale="zh-CN",
        subject="快递员已取件", body="您的商品已由快递员取件。",
    )  # fmt: skip


async def test_e_mails_go_out_together_not_six_at_a_time() -> None:
    handler = Gathering()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        provider = SmtpProvider("127.0.0.1", port, "noreply@example.com", workers=AT_ONCE)
        sent = await asyncio.gather(*(provider.send(request(n)) for n in range(AT_ONCE)))
    finally:
        controller.stop()
    assert sent == [message_id_for(request(n).dedupe_key) for n in range(AT_ONCE)]
    assert handler.arrived == AT_ONCE
