import io
import json

import structlog

from hub.core.logging import configure_logging


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
