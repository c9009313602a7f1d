"""plantcdn's HTTP request: S3-shaped response header names.

Twisted writes header names in Http-Header-Case.  S3 sends its own headers
in lower case (``x-amz-request-id``, ``x-amz-meta-color``), and botocore
keeps the case of a ``x-amz-meta-*`` name as the metadata key, so
``X-Amz-Meta-Color`` would reach Django as ``{"Color": ...}`` instead of
``{"color": ...}``.  :class:`AmzHeaders` writes every ``x-amz-*`` name in
lower case, as AWS does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from twisted.web.http_headers import Headers
from twisted.web.server import Request

__all__ = ["AmzHeaders", "PlantRequest"]

_AMZ = b"X-Amz-"


class AmzHeaders(Headers):
    """Response headers whose ``x-amz-*`` names go on the wire in lower case."""

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(_AMZ) else name), values


class PlantRequest(Request):
    """A ``twisted.web.server.Request`` with S3-shaped response headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = AmzHeaders()
