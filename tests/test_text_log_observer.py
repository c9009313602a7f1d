"""plantcdn's text log observer writes exactly what twistd's own would, cheaper."""

from __future__ import annotations

import io
import time

from twisted.logger import Logger, LogLevel, LogPublisher, textFileLogObserver
from twisted.python.failure import Failure

from plantcdn.accesslog import ClassicTextObserver, log_access


def _both(emit: object) -> tuple[str, str]:
    ours, theirs = io.StringIO(), io.StringIO()
    publisher = LogPublisher(ClassicTextObserver(ours), textFileLogObserver(theirs))
    emit(Logger(namespace="plantcdn.test", observer=publisher))  # type: ignore[operator]
    return ours.getvalue(), theirs.getvalue()


def test_access_lines_match_twistds_text_format() -> None:
    def emit(logger: Logger) -> None:
        access = Logger(namespace="plantcdn.access", observer=logger.observer)
        for status, code in ((200, None), (403, "SignatureDoesNotMatch")):
            log_access(client="127.0.0.1", method="GET", path="/cdn/company_1/plant_1/a.webp",
                       operation="CdnGet", status=status, bytes_in=0, bytes_out=5,
                       duration_ms=0.25, request_id="ABC", error_code=code, logger=access)

    ours, theirs = _both(emit)
    assert ours == theirs
    assert ours.count("[plantcdn.access#info]") == 2


def test_other_events_match_twistds_text_format() -> None:
    def emit(logger: Logger) -> None:
        logger.info("plain {word}", word="text")
        logger.warn("two\nlines")
        logger.emit(LogLevel.error, "with a system", log_system="worker 2")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.failure("it failed", Failure())
        logger.info("no time", log_time=None)

    ours, theirs = _both(emit)
    assert ours == theirs
    assert "Traceback" in ours and "\tlines" in ours


def test_the_time_prefix_follows_the_clock_across_seconds() -> None:
    def emit(logger: Logger) -> None:
        now = time.time()
        for when in (now, now + 0.5, now + 1.2, now + 3600):
            logger.info("at {when}", when=when, log_time=when)

    ours, theirs = _both(emit)
    assert ours == theirs


def test_access_event_is_the_one_logger_info_would_emit() -> None:
    """log_access skips Logger.emit's level check, not anything an observer sees."""
    fields = dict(client="10.0.0.7", method="PUT", path="/plantdb-inbox/company_1/plant_2/a",
                  operation="PutObject", status=403, bytes_in=5, bytes_out=312,
                  duration_ms=1.25, request_id="8A41935095C7BB1F", error_code="AccessDenied")
    direct: list[dict] = []
    logger = Logger(namespace="plantcdn.access", observer=LogPublisher(direct.append))
    log_access(**fields, logger=logger)  # type: ignore[arg-type]
    via_info: list[dict] = []
    reference = Logger(namespace="plantcdn.access", observer=LogPublisher(via_info.append))
    event = dict(direct[0])
    reference.info(
        "{access_line}",
        **{k: v for k, v in event.items() if not k.startswith("log_")},
    )
    expected = dict(via_info[0])
    for ev in (event, expected):
        assert abs(ev.pop("log_time") - time.time()) < 5
        ev.pop("log_logger")
    assert event == expected
