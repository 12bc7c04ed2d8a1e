import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from hub.core.logging import (
    _ReusedEncoder,
    add_timestamp,
    bind_record,
    configure_logging,
    unbind_record,
)


def test_logs_never_show_a_phone_number_name_or_street() -> None:
    configure_logging("INFO", "json")
    stream = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    log = structlog.get_logger("test")
    log.info(
        "notification_sent",
        phone="13800138000",
        name="张伟",
        street="文三路 478 号华星时代广场",
        error_message="SMS to 13912345678 failed",
        case_id="AS1",
    )
    line = json.loads(stream.getvalue())
    assert line["phone"] == "1***"
    assert line["name"] == "张***"
    assert line["street"] == "文***"
    assert line["error_message"] == "SMS to 139****5678 failed"
    assert line["case_id"] == "AS1"
    for secret in ("13800138000", "13912345678", "张伟", "文三路"):
        assert secret not in stream.getvalue()


def test_a_record_context_is_on_every_line_and_masked_like_the_rest() -> None:
    configure_logging("INFO", "json")
    stream = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    log = structlog.get_logger("test")
    token = bind_record({"topic": "t", "offset": 7, "case_id": "RQ-13800138000", "name": "张伟"})
    try:
        log.info("message_handled", outcome="processed", topic="explicit")
    finally:
        unbind_record(token)
    log.info("after", note="digits 1380013800 and 138001380001 are no phone numbers")
    handled, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert handled["topic"] == "explicit"  # what the line says wins over the context
    assert (handled["offset"], handled["outcome"]) == (7, "processed")
    assert handled["case_id"] == "RQ-138****8000"
    assert handled["name"] == "张***"
    assert "offset" not in after
    assert after["note"] == "digits 1380013800 and 138001380001 are no phone numbers"


@pytest.mark.parametrize(
    "nanoseconds",
    [
        0,
        1,
        999,
        1_000,
        1_764_576_000_000_000_000,
        1_764_576_000_123_456_789,
        253_402_300_799_999_999_999,
    ],
)
def test_the_time_stamp_is_the_one_structlog_writes(
    monkeypatch: pytest.MonkeyPatch, nanoseconds: int
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanoseconds // 1000)
    expected = moment.isoformat().replace("+00:00", "Z")
    assert add_timestamp(None, "info", {})["timestamp"] == expected
    again = add_timestamp(None, "info", {})["timestamp"]  # from the cached second
    assert again == expected


def test_a_line_renders_as_structlogs_json_renderer_writes_it() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    event = {"event": "é", "opaque": Opaque(), "nan": float("nan"), "pair": (1, 2), "set": {"a"}}
    standard = structlog.processors.JSONRenderer(ensure_ascii=False)
    ours = structlog.processors.JSONRenderer(_ReusedEncoder(), ensure_ascii=False)
    for _ in range(2):  # the second line reuses the encoder
        assert ours(None, "info", dict(event)) == standard(None, "info", dict(event))
