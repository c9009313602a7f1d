"""Connection hygiene: deadlines for slow clients and clean refusals of oversized heads.

Twisted's ``HTTPChannel`` has one clock, ``timeOut``: an *idle* timeout that
every received byte resets.  A slow-loris client that sends one header byte
every few seconds therefore holds its connection (a file descriptor, a
parser) forever, and a client that stops sending in the middle of an
upload keeps the upload's temporary file open until the idle timeout.
plantcdn adds two deadlines, as a web server in front of S3 would:

header timeout (``PLANTCDN_HEADER_TIMEOUT``)
    The request line and all headers must arrive within this many seconds of
    the connection opening (or, on a kept-alive connection, of the request's
    first byte), however the bytes are spread.  Past it the client gets S3's
    400 ``RequestTimeout`` and the connection is closed.

body idle timeout (``PLANTCDN_BODY_IDLE_TIMEOUT``)
    While a request body arrives, no gap between two pieces may exceed this.
    Past it the upload is aborted (its temporary file removed) and the client
    gets 400 ``RequestTimeout``, as S3 answers ("Your socket connection to the
    server was not read from or written to within the timeout period").

Twisted's own ``Site.timeOut`` stays the idle timeout of a kept-alive
connection between requests (Twisted's 60 s unless a deadline above is
longer).  A request head over Twisted's limits (16 KiB, 500 headers, a line
over 16 KiB) is answered with S3's 400 ``RequestHeaderSectionTooLarge`` rather
than Twisted's bare status line or a silent close.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.server import Site

from plantcdn.errors import S3Error, render_error_xml

__all__ = [
    "BodyIdleTimer",
    "PlantChannel",
    "configure_site",
    "error_response",
    "raise_fd_limit",
    "watch_body",
]

log = Logger()

#: Per connection: the largest read, and unsent bytes before the channel is paused.
TRANSPORT_BUFFER = 256 * 1024

#: Enough descriptors for a few thousand connections and their upload files.
WANTED_FDS = 8192


def error_response(error: S3Error) -> bytes:
    """A complete ``Connection: close`` HTTP response carrying S3's XML error."""
    from plantcdn.call import new_request_ids

    request_id, host_id = new_request_ids()
    body = render_error_xml(error, request_id=request_id, host_id=host_id)
    reason = HTTPStatus(error.status).phrase
    head = (
        f"HTTP/1.1 {error.status} {reason}\r\n"
        f"x-amz-request-id: {request_id}\r\nx-amz-id-2: {host_id}\r\n"
        "Server: AmazonS3\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class PlantChannel(HTTPChannel):
    """``HTTPChannel`` with an absolute header deadline and S3-shaped head refusals."""

    header_timeout: float | None = None
    _header_call: IDelayedCall | None = None
    site: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Twisted's 64 KiB both caps each read and pauses the channel once that much
        # is unsent: every 64 KiB response paused and resumed its connection (two
        # epoll changes) and a large upload arrived in many small reads.
        transport: Any = self.transport
        transport.bufferSize = TRANSPORT_BUFFER
        self._arm_header_deadline()

    def dataReceived(self, data: bytes) -> None:
        lane: Callable[[PlantChannel, bytes], bool] | None = getattr(self.site, "edge_lane", None)
        if lane is not None and self._between_requests() and lane(self, data):
            self._cancel_header_deadline()  # armed when the connection opened
            self.resetTimeout()  # as HTTPChannel does for every byte received
            return
        # The first byte of the next request on a kept-alive connection starts its clock.
        if self._header_call is None and self.line_mode and not self._handlingRequest:
            self._arm_header_deadline()
        super().dataReceived(data)

    def _between_requests(self) -> bool:
        """Nothing of a request received or unanswered: *data* would start a new one."""
        return bool(
            self.line_mode
            and not self._buffer
            and not self._handlingRequest
            and not self.requests
            and self.persistent
        )

    def allHeadersReceived(self) -> None:
        self._cancel_header_deadline()
        super().allHeadersReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_header_deadline()
        super().connectionLost(reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        """One header line over ``MAX_LENGTH``: Twisted would just close."""
        self._refuse(S3Error("RequestHeaderSectionTooLarge"))

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's answer to a malformed or oversized head, made explicit.

        Twisted counts the head against ``totalHeadersSize`` and ``maxHeaders``
        before calling this; over either, the answer is S3's code.
        """
        if (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        ):
            self._refuse(S3Error("RequestHeaderSectionTooLarge"))
            return
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.loseConnection()

    # -- the header deadline -------------------------------------------------

    def _arm_header_deadline(self) -> None:
        timeout = self.header_timeout
        if timeout and self._header_call is None and self.transport is not None:
            self._header_call = self.callLater(timeout, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()

    def _header_deadline_passed(self) -> None:
        self._header_call = None
        if self.transport is None or not self.line_mode or self._handlingRequest:
            return
        log.info("closing a connection whose request head took over {timeout}s: {peer}",
                 timeout=self.header_timeout, peer=str(self.transport.getPeer()))
        self._refuse(S3Error("RequestTimeout"))

    def _refuse(self, error: S3Error) -> None:
        """Answer *error* and close; abort if the client does not read it."""
        transport: Any = self.transport
        transport.write(error_response(error))
        self.persistent = False
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


def _channel_protocol() -> _GenericHTTPChannelProtocol:
    """Twisted's HTTP/1.1-or-h2 switch around a :class:`PlantChannel`.

    ``_GenericHTTPChannelProtocol`` is what Twisted's own default factory
    (``_genericHTTPChannelProtocolFactory``) builds; only the channel differs.
    """
    return _GenericHTTPChannelProtocol(PlantChannel())


def configure_site(site: Site, *, header_timeout: float, body_idle_timeout: float) -> None:
    """Give *site* plantcdn's channel and deadlines (0 switches a deadline off)."""

    def protocol() -> _GenericHTTPChannelProtocol:
        proto = _channel_protocol()
        proto._channel.header_timeout = header_timeout or None
        return proto

    site.protocol = protocol  # type: ignore[assignment]
    site.body_idle_timeout = body_idle_timeout or None  # type: ignore[attr-defined]
    # Twisted's idle timeout must not cut a phase before plantcdn's deadline answers it.
    site.timeOut = max(site.timeOut or 0, header_timeout + 1, body_idle_timeout + 1)


class BodyIdleTimer:
    """Fires *expired* once no body piece has arrived for *timeout* seconds.

    :meth:`touch` only records the time (it runs for every piece of a large
    upload); the delayed call re-arms itself for the remainder when it finds
    the body was active meanwhile.
    """

    def __init__(self, clock: IReactorTime, timeout: float, expired: Callable[[], None]) -> None:
        self.clock = clock
        self.timeout = timeout
        self.expired = expired
        self.last = clock.seconds()
        self._call: IDelayedCall | None = clock.callLater(timeout, self._check)

    def touch(self) -> None:
        self.last = self.clock.seconds()

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _check(self) -> None:
        self._call = None
        left = self.last + self.timeout - self.clock.seconds()
        if left > 0:
            self._call = self.clock.callLater(left, self._check)
            return
        self.expired()


def watch_body(
    request: Any, length: int | None, expired: Callable[[], None]
) -> BodyIdleTimer | None:
    """A body idle timer for *request* when a body follows and its site sets one."""
    if length == 0:
        return None
    site = getattr(request.channel, "site", None)
    timeout = getattr(site, "body_idle_timeout", None)
    clock = getattr(site, "reactor", None)
    if not timeout or clock is None:
        return None
    return BodyIdleTimer(clock, timeout, expired)


def raise_fd_limit(wanted: int = WANTED_FDS) -> tuple[int, int]:
    """Raise the soft descriptor limit towards *wanted* (never above the hard limit).

    Each connection costs a descriptor and each upload one more; a soft limit of
    1024 (common default) would let a few hundred slow clients refuse the rest
    with EMFILE.  Returns the (old, new) soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft
