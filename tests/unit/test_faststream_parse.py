"""The hub's parser shim in front of FastStream's batch parser: no header can fail a poll there."""

from __future__ import annotations

from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser

from hub.core.service import _tolerant_parse


def record(
    offset: int, value: bytes, headers: list[tuple[str, Any]]
) -> ConsumerRecord[bytes, bytes]:
    # Any: aiokafka types header values as bytes, but a record on the wire may carry a null.
    return ConsumerRecord(
        topic="t", partition=0, offset=offset, timestamp=1, timestamp_type=0, key=b"k",
        value=value, checksum=None, serialized_key_size=1, serialized_value_size=len(value),
        headers=headers,
    )  # fmt: skip


async def test_null_and_non_utf8_headers_anywhere_in_a_poll_pass_through_unchanged() -> None:
    raw = (
        record(0, b"first", [("ce_id", None), ("ce_source", b"\xff\xfe"), ("ok", b"yes")]),
        record(1, b"second", [("ce_type", b"\xc3\x28"), ("ce_id", None)]),
        record(2, b"", [("ce_id", b"e3")]),
    )
    parser = AioKafkaBatchParser(msg_class=KafkaMessage, regex=None)

    message = await _tolerant_parse(raw, parser.parse_batch)

    assert message.raw_message is raw  # the pipeline reads the originals, bytes and Nones
    assert message.headers == {"ce_id": "", "ce_source": "", "ok": "yes"}
    assert message.body == [b"first", b"second", b""]  # what FastStream's metrics size
