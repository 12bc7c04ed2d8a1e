import io
import json

import structlog

from hub.core.logging import bind_record, configure_logging, unbind_record


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
