"""The Klein application: thin routes that parse, verify, hand over and render.

Every S3 request goes through :meth:`S3App.s3`: request ids, routing to an
operation, authentication, the bucket-owner check, then the operation's
handler.  Any :class:`S3Error` reaches one place that writes AWS's XML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.routing import PathConverter

from plantcdn import bucketops, cors, multipart, objectattributes, objects, postobject
from plantcdn.call import Handler, S3Call, Services, new_request_ids, parse_query
from plantcdn.cdn import CdnResource
from plantcdn.config import Config
from plantcdn.errors import S3Error, render_error_xml
from plantcdn.ops import OPS_PREFIX, Ops, annotate
from plantcdn.routing import Target, operation_for, resolve_target
from plantcdn.scopes import request_subject
from plantcdn.sigv4 import RequestParts
from plantcdn.storage import Storage
from plantcdn.streaming import StreamedUpload
from plantcdn.verification import Verifier
from plantcdn.writer import Sink

__all__ = ["S3App"]

log = Logger()

ALL_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]

#: Operations whose bodies stream straight into storage, and what prepares them.
STREAMED: dict[str, Callable[[Services, S3Call], Sink]] = {
    "PutObject": lambda svc, call: objects.prepare_put(svc, call),
    "PostObject": lambda svc, call: postobject.start_post(svc, call),
    "UploadPart": lambda svc, call: multipart.prepare_part(svc, call),
}

#: The largest body a request other than an upload may announce: the biggest XML
#: document any handler takes (4 MiB: DeleteObjects, CompleteMultipartUpload),
#: twice over for aws-chunked framing, as :func:`plantcdn.s3shared.read_xml_request` reads.
MAX_SPOOLED_BODY = 2 * 4 * 1024 * 1024 + 64 * 1024

#: Operations that authenticate themselves (form signatures, CORS preflight).
SELF_AUTHENTICATING = frozenset({"PostObject", "Preflight"})


def request_headers(request: IRequest) -> dict[str, str]:
    """Lower-case header names; repeated headers joined with "," (as SigV4 does)."""
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers[name.decode("latin-1").lower()] = ",".join(v.decode("latin-1") for v in values)
    return headers


class _KeyPathConverter(PathConverter):
    """Werkzeug's ``<path:>`` stops at a line break, but a key may hold one
    (percent-encoded): such a request must still reach :meth:`S3App.s3` and
    get an S3 answer, not a bare HTML 404."""

    regex = r"[^/][\s\S]*?"


class S3App:
    """The S3 API (and, mounted on it, the CDN and the service's own endpoints)."""

    app = Klein()
    app.url_map.merge_slashes = False
    app.url_map.converters["path"] = _KeyPathConverter

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        clock: IReactorTime,
        cooperator: Cooperator | None = None,
        ops: Ops | None = None,
    ) -> None:
        self.ops = ops if ops is not None else Ops(storage, clock, with_process_metrics=False)
        self.services = Services(
            config=config,
            storage=storage,
            verifier=Verifier(config),
            clock=clock,
            cooperator=cooperator or Cooperator(),
        )
        self.cdn = CdnResource(config, storage, clock=clock.seconds)
        self.handlers: dict[str, Handler] = {}
        for module in (objects, objectattributes, bucketops, multipart, postobject, cors):
            self.handlers.update(module.HANDLERS)

    def resource(self) -> IResource:
        """The site's root: ``/cdn/`` goes straight to the CDN resource (the hot read
        path skips Klein's routing); everything else goes to the Klein app."""
        return _FrontDoor(self.app.resource(), self.cdn, _UploadCompletion(self))

    @app.route(OPS_PREFIX, branch=True, methods=ALL_METHODS)
    def plantcdn_ops(self, request: IRequest) -> IResource:
        """``/_plantcdn/health`` and ``/_plantcdn/metrics``: never a bucket (see plantcdn.ops)."""
        return self.ops.resource()

    @app.route("/cdn/", branch=True, methods=ALL_METHODS, strict_slashes=False)
    def cdn_read_path(self, request: IRequest) -> IResource:
        """``/cdn/{key}``: the long-term bucket as CloudFront serves it (see plantcdn.cdn)."""
        return self.cdn

    def body_router(self, request: IRequest, length: int | None) -> StreamedUpload | None:
        """Called by :class:`~plantcdn.request.PlantRequest` once the headers are in:
        a sink that verifies and writes an upload's body as it arrives, or None to
        let Twisted spool the body (requests whose body is small or not an object)."""
        if request.path.startswith((b"/cdn/", OPS_PREFIX.encode("ascii"))):
            return _spool_at_most(request, length, MAX_SPOOLED_BODY, "MaxMessageLengthExceeded")
        request_id, host_id = new_request_ids()
        call = self._parse(request, request_id)
        prepare = STREAMED.get(call.operation)
        if prepare is None:
            request.plantcdn_parsed = (call, host_id)  # type: ignore[attr-defined]
            # An XML body no handler would read past its limit: refuse it from its
            # Content-Length (or, chunked, as it passes the limit) instead of
            # spooling it to disk first.
            return _spool_at_most(request, length, MAX_SPOOLED_BODY, "MaxMessageLengthExceeded")
        stream = StreamedUpload(call, host_id)
        annotate(request, operation=call.operation)
        cors.apply_cors(self.services, call)  # an early refusal carries them too
        try:
            if call.operation not in SELF_AUTHENTICATING:
                call.auth = self.services.verifier.authenticate(
                    call.parts,
                    now=call.now,
                    bucket=call.target.bucket,
                    virtual_hosted=call.target.virtual_hosted,
                )
                self.services.verifier.check_bucket_owner(call.headers)
                _authorize(self.services.verifier, call)
            stream.inner = prepare(self.services, call)
        except S3Error as error:
            stream.failed = error
        return stream

    @app.route("/", branch=True, methods=ALL_METHODS, strict_slashes=False)
    async def s3(self, request: IRequest) -> Any:
        streamed = getattr(request, "body_sink", None)
        parsed: tuple[S3Call, str] | None = getattr(request, "plantcdn_parsed", None)
        if isinstance(streamed, StreamedUpload):
            request_id, host_id = streamed.call.request_id, streamed.host_id
        elif parsed is not None:  # parsed when the headers arrived (body_router)
            request_id, host_id = parsed[0].request_id, parsed[1]
        else:
            request_id, host_id = new_request_ids()
        request.setHeader(b"x-amz-request-id", request_id.encode("ascii"))
        request.setHeader(b"x-amz-id-2", host_id.encode("ascii"))
        request.setHeader(b"Server", b"AmazonS3")
        target = Target(None, None, False)
        try:
            if isinstance(streamed, StreamedUpload):
                call = streamed.call
            elif parsed is not None:
                call = parsed[0]
            else:
                call = self._parse(request, request_id)
            target = call.target
            annotate(request, operation=call.operation)
            cors.apply_cors(self.services, call)  # before the handler: errors get them too
            return await self._dispatch(call)
        except S3Error as error:
            return self._error(request, error, request_id, host_id, target)
        except Exception:
            log.failure(
                "unexpected error in {method} {path}", method=request.method, path=request.path
            )
            if request.startedWriting:
                _abort(request)
                return None
            return self._error(request, S3Error("InternalError"), request_id, host_id, target)

    def _parse(self, request: IRequest, request_id: str) -> S3Call:
        uri = request.uri.decode("latin-1")
        raw_path, _, raw_query = uri.partition("?")
        if not raw_path.startswith("/"):
            raise S3Error("InvalidURI")
        pairs, query = parse_query(raw_query)
        headers = request_headers(request)
        method = request.method.decode("latin-1")  # case-sensitive (RFC 9110 9.1): "put" is not PUT
        target = resolve_target(headers.get("host"), raw_path, self.services.config.base_host)
        try:
            operation = operation_for(method, target, query, headers)
        except S3Error as error:
            # The error names what was addressed, as every other error does.
            if error.resource is None:
                error.resource = target.resource
            raise
        parts = RequestParts(method=method, raw_path=raw_path, query=pairs, headers=headers)
        return S3Call(
            request=request,
            target=target,
            operation=operation,
            headers=headers,
            query=query,
            parts=parts,
            request_id=request_id,
            now=self.services.clock.seconds(),
        )

    async def _dispatch(self, call: S3Call) -> Any:
        handler = self.handlers.get(call.operation)
        if call.auth is None and call.operation not in SELF_AUTHENTICATING:
            call.auth = self.services.verifier.authenticate(
                call.parts,
                now=call.now,
                bucket=call.target.bucket,
                virtual_hosted=call.target.virtual_hosted,
            )
            self.services.verifier.check_bucket_owner(call.headers)
            _authorize(self.services.verifier, call)
        if handler is None:
            raise S3Error(
                "NotImplemented",
                f"{call.operation} is not implemented by plantcdn",
            )
        return await handler(self.services, call)

    def _error(
        self,
        request: IRequest,
        error: S3Error,
        request_id: str,
        host_id: str,
        target: Target,
    ) -> bytes | None:
        annotate(request, error_code=error.code)
        if request.startedWriting:
            _abort(request)
            return None
        log.info(
            "{method} {path} refused: {status} {code}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            status=error.status,
            code=error.code,
        )
        request.setResponseCode(error.status)
        for name, value in error.headers.items():
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        _drop_success_headers(request)
        body = render_error_xml(
            error, request_id=request_id, host_id=host_id, resource=target.resource
        )
        request.setHeader(b"Content-Type", b"application/xml")
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", b"0")
            return b""
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        return body


def _spool_at_most(request: IRequest, length: int | None, limit: int, code: str) -> None:
    """Let Twisted spool this body, but never more than *limit* bytes of it.

    A body over *limit* is refused with S3's *code*: from its Content-Length
    before any of it is read, or, sent chunked, as soon as it passes the limit
    (see :attr:`plantcdn.request.PlantRequest.spool_limit`).
    """
    if length is not None and length > limit:
        raise S3Error(code)
    request.spool_limit = (limit, code)  # type: ignore[attr-defined]
    return None


class _FrontDoor(Resource):
    """Dispatches the first path segment: ``cdn`` to the CDN, the rest to Klein;
    an upload whose body was streamed was routed when its headers arrived."""

    def __init__(self, app: IResource, cdn: IResource, uploads: IResource) -> None:
        super().__init__()
        self.app = app
        self.cdn = cdn
        self.uploads = uploads

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        if path == b"cdn" and request.postpath:
            return self.cdn
        if isinstance(getattr(request, "body_sink", None), StreamedUpload):
            return self.uploads
        # Klein routes on the whole path: give back the segment traversal took.
        request.postpath.insert(0, request.prepath.pop())
        return self.app

    def render(self, request: IRequest) -> bytes | int:
        return self.app.render(request)


class _UploadCompletion(Resource):
    """Completes a streamed upload (PutObject, PostObject) through :meth:`S3App.s3`
    without Klein's URL matching: :meth:`S3App.body_router` already parsed,
    routed and verified it when its headers arrived, and matching the path
    again cost a tenth of a small PUT.  Cancelled, like Klein's, when the
    client goes away before the answer."""

    isLeaf = True

    def __init__(self, app: S3App) -> None:
        super().__init__()
        self.s3app = app

    def render(self, request: IRequest) -> int:
        finished = False

        def gone(result: object) -> object:
            nonlocal finished
            finished = True
            return result

        done = Deferred.fromCoroutine(self.s3app.s3(request))
        request.notifyFinish().addBoth(gone).addErrback(lambda _: done.cancel())

        def respond(body: object) -> None:
            if finished:
                return
            if isinstance(body, bytes):
                request.write(body)
            request.finish()

        done.addCallback(respond)
        done.addErrback(
            lambda failure: None
            if failure.check(CancelledError)
            else log.failure("completing an upload", failure)
        )
        return NOT_DONE_YET


def _authorize(verifier: Verifier, call: S3Call) -> None:
    """Scoped credentials: the signer may do this operation on this key or prefix."""
    assert call.auth is not None
    verifier.authorize(
        call.auth.access_key_id,
        call.operation,
        call.target.bucket,
        request_subject(call.operation, call.target.key, call.query),
    )


def _drop_success_headers(request: IRequest) -> None:
    """Headers a handler set for success must not describe an error body."""
    for name in (b"ETag", b"Last-Modified", b"Accept-Ranges", b"Content-Encoding"):
        request.responseHeaders.removeHeader(name)


def _abort(request: IRequest) -> None:
    """A response already under way cannot carry an error: cut the connection."""
    transport: Any = getattr(request.channel, "transport", None)
    if transport is not None:
        transport.abortConnection()
