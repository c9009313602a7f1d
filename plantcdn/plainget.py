"""Recognise the one request an edge answers most: a plain ``GET`` of an object.

A page full of plant photos sends requests like::

    GET /cdn/company_1/plant_2/photo.webp HTTP/1.1
    Host: cdn.example
    Accept: image/webp,*/*

:func:`plain_get_target` says whether a chunk of bytes is exactly one such
request head, complete, and nothing else, so that ``/cdn`` can answer a
cached object without building a ``twisted.web`` request (see
:mod:`plantcdn.edgelane`).  It is deliberately narrow: anything that could
change the answer -- a query string (signed URLs), ``Range``, a conditional,
``Origin`` (CORS), a body, ``Connection: close``, HTTP/1.0, a header it does
not know, a malformed or oversized line -- makes it return ``None``, and the
request takes Twisted's full path, which answers it exactly as before.

Pure: bytes in, bytes (or ``None``) out; no Twisted.
"""

from __future__ import annotations

import re

__all__ = ["IGNORED_HEADERS", "MAX_PLAIN_HEAD", "plain_get_target"]

#: Request headers whose value the ``/cdn`` read path never looks at (for an
#: unsigned distribution): what browsers, curl and wrk send with an image fetch.
IGNORED_HEADERS = frozenset(
    {
        b"host",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"referer",
        b"cache-control",
        b"pragma",
        b"dnt",
        b"priority",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
        b"sec-ch-ua",
        b"sec-ch-ua-mobile",
        b"sec-ch-ua-platform",
        b"upgrade-insecure-requests",
    }
)

#: Longer heads go the full way (Twisted enforces its own limits there).
MAX_PLAIN_HEAD = 8192

# Request line: the target is printable ASCII without "?" or "#" (no query).
_REQUEST_LINE = re.compile(rb'GET (/[!"$->@-~]*) HTTP/1\.1')
# A header field: a token name, a colon, a value of visible ASCII and blanks.
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([ -~\t]*?)[ \t]*")


def plain_get_target(data: bytes, mount: bytes) -> bytes | None:
    """The request target if *data* is one complete plain GET head under *mount*."""
    if len(data) > MAX_PLAIN_HEAD or not data.startswith(b"GET " + mount):
        return None
    end = data.find(b"\r\n\r\n")
    if end != len(data) - 4:
        return None  # incomplete, or followed by more (a body, a pipelined request)
    lines = data[:end].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    for field in lines[1:]:
        matched = _FIELD.fullmatch(field)
        if matched is None:
            return None
        name = matched.group(1).lower()
        if name == b"connection":
            if matched.group(2).lower() != b"keep-alive":
                return None
        elif name not in IGNORED_HEADERS:
            return None
    return line.group(1)
