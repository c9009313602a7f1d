"""plantcdn's HTTP request: S3-shaped response headers and streamed uploads.

Header names
    Twisted writes header names in Http-Header-Case.  S3 sends its own
    headers in lower case (``x-amz-request-id``, ``x-amz-meta-color``), and
    botocore keeps the case of a ``x-amz-meta-*`` name as the metadata key, so
    ``X-Amz-Meta-Color`` would reach Django as ``{"Color": ...}``.
    :class:`AmzHeaders` writes every ``x-amz-*`` name in lower case.

Streamed bodies
    Twisted normally spools a whole body to a temporary file before the
    resource sees the request.  For uploads, :class:`PlantRequest` instead asks
    the site's ``body_router`` -- as soon as the headers are in -- for a
    :class:`BodySink` that verifies the request and writes the body straight
    into its destination temporary file as it arrives.  A request the sink
    refuses (bad signature, policy, size) is answered at once, the rest of its
    body is drained unread (up to :data:`DRAIN_LIMIT`) so that clients that
    send everything before reading still see the S3 error, and nothing is
    stored.  A client that goes away mid-body aborts the sink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from io import BytesIO
from typing import Any, Protocol

from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from plantcdn.connections import BodyIdleTimer, watch_body
from plantcdn.errors import S3Error

__all__ = ["DRAIN_LIMIT", "AmzHeaders", "BodySink", "PlantRequest"]

_AMZ = b"X-Amz-"

#: How much of a refused body is read and dropped before the connection is cut.
DRAIN_LIMIT = 64 * 1024 * 1024


class AmzHeaders(Headers):
    """Response headers whose ``x-amz-*`` names go on the wire in lower case."""

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(_AMZ) else name), values


class BodySink(Protocol):
    """Takes an upload's body as it arrives (see :mod:`plantcdn.streaming`)."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    def render_error(self, error: S3Error) -> tuple[int, list[tuple[bytes, bytes]], bytes]: ...


#: ``site.body_router(request, length)``: a sink for this upload, or None to spool.
BodyRouter = Callable[["PlantRequest", "int | None"], "BodySink | None"]


class PlantRequest(Request):
    """A ``twisted.web.server.Request`` with S3-shaped headers and streamed uploads."""

    body_sink: BodySink | None = None
    #: ``(bytes, S3 error code)``: how much of a body Twisted may spool (set by the
    #: router); a chunked body that passes it is refused as it arrives.
    spool_limit: tuple[int, str] | None = None
    _spooled = 0
    answered_early = False
    plantcdn_error_code: str | None = None
    body_complete = False
    _drained = 0
    _body_timer: BodyIdleTimer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = AmzHeaders()

    # -- body streaming --------------------------------------------------------

    def gotLength(self, length: int | None) -> None:
        self._body_timer = watch_body(self, length, self.body_timed_out)
        site = getattr(self.channel, "site", None)
        router: BodyRouter | None = getattr(site, "body_router", None)
        sink = None
        if router is not None:
            channel: Any = self.channel
            self.method = channel._command
            self.uri = channel._path
            self.clientproto = channel._version
            self.path = self.uri.split(b"?", 1)[0]
            try:
                sink = router(self, length)
            except S3Error as error:
                self.content = BytesIO()
                self._answer_early(None, error)
                return
        if sink is None:
            super().gotLength(length)
            return
        self.content = BytesIO()
        self.body_sink = sink
        failed: S3Error | None = getattr(sink, "failed", None)
        if failed is not None:
            self._answer_early(sink, failed)

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_timer is not None:
            self._body_timer.touch()
        if self.answered_early:
            self._drain(len(data))
            return
        sink = self.body_sink
        if sink is None:
            limit = self.spool_limit
            if limit is not None:
                self._spooled += len(data)
                if self._spooled > limit[0]:
                    spooled, self.content = self.content, BytesIO()
                    spooled.close()  # what was spooled so far is dropped
                    self._answer_early(None, S3Error(limit[1]))
                    return
            super().handleContentChunk(data)
            return
        try:
            sink.write(data)
        except S3Error as error:
            sink.abort()
            self._answer_early(sink, error)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.body_complete = True
        if self._body_timer is not None:
            self._body_timer.cancel()
        if self.answered_early:
            self._close()
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        if self.body_sink is not None and not self.body_complete:
            self.body_sink.abort()
        if self.answered_early:
            # The refusal was answered in full; the accounting (plantcdn.ops) must
            # not count the connection closing afterwards as a client gone away.
            account: Callable[..., None] | None = getattr(self, "_plantcdn_done", None)
            if account is not None:
                account(aborted=False)
        super().connectionLost(reason)

    def body_timed_out(self) -> None:
        """The body stalled past the body idle timeout (see :mod:`plantcdn.connections`):
        forget the upload and answer S3's 400 ``RequestTimeout``, then close."""
        if self.body_complete:
            return
        if not self.answered_early:
            if self.body_sink is not None:
                self.body_sink.abort()
            self._answer_early(self.body_sink, S3Error("RequestTimeout"))
        self._close()

    def _answer_early(self, sink: BodySink | None, error: S3Error) -> None:
        """Send the S3 error now; the body that follows is drained, never stored."""
        self.answered_early = True
        expects_continue = (self.requestHeaders.getRawHeaders(b"expect") or [b""])[0].lower()
        # Without a 100 Continue the client sends no body: Twisted must not send one.
        self.requestHeaders.removeHeader(b"expect")
        if sink is not None:
            status, headers, body = sink.render_error(error)
        else:
            status, headers, body = _plain_error(error)
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b"Error"
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        lines.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        lines.append(body)
        transport: Any = self.channel.transport
        transport.writeSequence(lines)
        self.setResponseCode(status)
        self.sentLength = len(body)
        self.plantcdn_error_code = error.code
        if expects_continue == b"100-continue":
            self._close()

    def _drain(self, size: int) -> None:
        self._drained += size
        if self._drained > DRAIN_LIMIT:
            self._close()

    def _close(self) -> None:
        transport: Any = getattr(self.channel, "transport", None)
        if transport is not None:
            transport.loseConnection()


def _plain_error(error: S3Error) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    from plantcdn.call import new_request_ids
    from plantcdn.errors import render_error_xml

    request_id, host_id = new_request_ids()
    body = render_error_xml(error, request_id=request_id, host_id=host_id)
    return (
        error.status,
        [(b"x-amz-request-id", request_id.encode()), (b"x-amz-id-2", host_id.encode()),
         (b"Content-Type", b"application/xml")],
        body,
    )
