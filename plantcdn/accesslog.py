"""One access-log line per request, and JSON log lines, both through ``twisted.logger``.

Twisted's own ``Site`` access log writes the full request URI, which for a
presigned URL contains ``X-Amz-Credential`` and ``X-Amz-Signature``; plantcdn
replaces it with :func:`log_access`, which logs the path *without* the query
string and never a header value.  The JSON observer writes one object per
line (what Docker, journald and log shippers expect) holding the formatted
message plus the access fields -- and no other event field, so a value passed
to a log call but not shown in its message can never leak into the JSON.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_NAMESPACE",
    "JsonLinesObserver",
    "json_log_observer",
    "use_json_target",
    "log_access",
    "safe_path",
]

ACCESS_NAMESPACE = "plantcdn.access"

#: The fields of an access event, in the order the JSON line lists them.
ACCESS_FIELDS = (
    "client",
    "method",
    "path",
    "operation",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "request_id",
    "error_code",
)

ACCESS_FORMAT = (
    '{client} "{method} {path}" {operation} {status} in={bytes_in} out={bytes_out} '
    "{duration_ms}ms id={request_id}{error_suffix}"
)

MAX_PATH_CHARS = 1024

_access_logger = Logger(namespace=ACCESS_NAMESPACE)
_PLAIN = re.compile(r"[\x21-\x7e]*")


def safe_path(raw_path: bytes) -> str:
    """The request path for a log line: no query string (it may carry a presigned
    signature), control characters escaped, bounded in length."""
    path = raw_path.split(b"?", 1)[0][: MAX_PATH_CHARS + 1]
    text = path.decode("latin-1")
    if not _PLAIN.fullmatch(text):  # the common case, printable ASCII, needs no escaping
        text = "".join(c if 0x20 < ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)
    if len(text) > MAX_PATH_CHARS:
        text = text[:MAX_PATH_CHARS] + "..."
    return text


def log_access(
    *,
    client: str,
    method: str,
    path: str,
    operation: str,
    status: int,
    bytes_in: int,
    bytes_out: int,
    duration_ms: float,
    request_id: str,
    error_code: str | None,
    logger: Logger = _access_logger,
) -> None:
    """Emit the access event for one finished (or abandoned) request."""
    # The line is formatted here, once, with an f-string: twisted.logger's own
    # formatter parses a many-field format string per event and per observer,
    # which cost more than the rest of a small request (see bench/).
    rounded = round(duration_ms, 1)
    rid = request_id or "-"
    suffix = f" code={error_code}" if error_code else ""
    line = (
        f'{client} "{method} {path}" {operation} {status} in={bytes_in} out={bytes_out} '
        f"{rounded}ms id={rid}{suffix}"
    )
    logger.info(
        "{access_line}",
        access_line=line,
        client=client,
        method=method,
        path=path,
        operation=operation,
        status=status,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        duration_ms=rounded,
        request_id=rid,
        error_code=error_code,
        plantcdn_access=True,
    )


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes each log event as one JSON object per line.

    Only the formatted message, level, namespace and time are written, plus the
    fixed access fields for access events and the traceback of a failure.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: Mapping[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time") or 0, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": getattr(level, "name", "info"),
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(dict(event)),
        }
        if event.get("plantcdn_access"):
            record.update({name: event.get(name) for name in ACCESS_FIELDS})
        failure = event.get("log_failure")
        if failure is not None:
            try:
                record["traceback"] = failure.getTraceback()
            except Exception:
                record["traceback"] = repr(failure)
        self.out.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self.out.flush()


#: Where :func:`json_log_observer` writes: twistd's ``(--logfile, -n)``, recorded by
#: ``--log-format json`` while the command line is parsed (twistd names its ``--logger``
#: factory by dotted name, so it cannot be handed a closure).
_json_target: tuple[str | None, bool] = ("-", True)


def use_json_target(logfile: str | None, nodaemon: bool) -> str:
    """Record where JSON lines go; returns the ``--logger`` name for twistd."""
    global _json_target
    _json_target = (logfile, nodaemon)
    return f"{__name__}.json_log_observer"


def json_log_observer() -> JsonLinesObserver:
    """twistd ``--logger`` factory: JSON lines where ``--logfile``/``-n`` say text would go
    (standard output by default, e.g. ``twistd -n --logger plantcdn.accesslog.json_log_observer
    plantcdn``)."""
    logfile, nodaemon = _json_target
    if logfile == "-" or (nodaemon and not logfile):
        return JsonLinesObserver(sys.stdout)
    path = logfile or "twistd.log"
    if os.path.exists(path) and not os.path.isfile(path):
        # A device such as /dev/null: LogFile would "rotate" it after 1 MB, renaming
        # the device away and leaving a regular file in its place.
        return JsonLinesObserver(open(path, "a", encoding="utf-8"))  # noqa: SIM115
    out: Any = LogFile.fromFullPath(path)
    return JsonLinesObserver(out)
