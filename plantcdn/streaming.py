"""Uploads written as they arrive: the app's side of :class:`~plantcdn.request.PlantRequest`.

When the headers of a PutObject, UploadPart or POST Object request are in, the app
verifies everything it can (signature, bucket, key, headers) and returns a
:class:`StreamedUpload` whose inner sink -- an
:class:`~plantcdn.writer.UploadWriter` or a
:class:`~plantcdn.postobject.PostUpload` -- hashes and writes each piece of
the body into its temporary file.  The handler that runs once the body is
complete finds the sink on the request and only has to publish the result.
"""

from __future__ import annotations

from typing import Any

from plantcdn.call import S3Call
from plantcdn.errors import S3Error, render_error_xml
from plantcdn.writer import Sink

__all__ = ["StreamedUpload", "streamed_sink"]

_OWN_HEADERS = frozenset(
    {b"x-amz-request-id", b"x-amz-id-2", b"server", b"content-type", b"content-length", b"date"}
)


class StreamedUpload:
    """A request body being streamed into *inner*, or refused before it started."""

    def __init__(self, call: S3Call, host_id: str) -> None:
        self.call = call
        self.host_id = host_id
        self.inner: Sink | None = None
        self.failed: S3Error | None = None

    def write(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.write(data)

    def abort(self) -> None:
        if self.inner is not None:
            self.inner.abort()

    def render_error(self, error: S3Error) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The S3 error response for a refusal that happens while the body streams."""
        body = render_error_xml(
            error,
            request_id=self.call.request_id,
            host_id=self.host_id,
            resource=self.call.target.resource,
        )
        headers = [
            (b"x-amz-request-id", self.call.request_id.encode("ascii")),
            (b"x-amz-id-2", self.host_id.encode("ascii")),
            (b"Server", b"AmazonS3"),
            (b"Content-Type", b"application/xml"),
        ]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
        # Headers already decided for this response (the bucket's CORS rule) go too.
        for name, values in self.call.request.responseHeaders.getAllRawHeaders():
            if name.lower() not in _OWN_HEADERS:
                headers += [(name, value) for value in values]
        return error.status, headers, body


def streamed_sink(call: S3Call) -> Any:
    """The inner sink already fed with this call's body, or None (the body was spooled)."""
    sink = getattr(call.request, "body_sink", None)
    if isinstance(sink, StreamedUpload) and sink.call is call:
        return sink.inner
    return None
