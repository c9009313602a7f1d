"""``/cdn``: the long-term bucket as CloudFront in front of a private S3 origin serves it.

A request for ``/cdn/company_1/plant_2/photo.webp`` returns the object stored
at key ``company_1/plant_2/photo.webp`` in the long-term bucket, with the
headers S3 would send (stored Content-Type, ETag, Cache-Control,
``x-amz-meta-*`` ...) plus the ones a CloudFront edge adds (``X-Cache``,
``Via``, ``X-Amz-Cf-Pop``, ``X-Amz-Cf-Id``, ``Age``).

:class:`CdnResource` subclasses :class:`twisted.web.static.File` for its
place in Twisted's resource tree, but it is a *leaf* that never uses
``File``'s child lookup, directory listing, index files or redirects: the
request path is decoded once, must be a key of the tenant layout, and the
file is opened by walking the bucket folder with ``O_NOFOLLOW`` (a symlink
anywhere takes the slow path of :meth:`plantcdn.storage.Storage.open`, which
follows only links that stay inside the bucket).  Nothing below
``.plantcdn/`` is reachable: keys start with ``company_``.

AWS pages followed (Amazon CloudFront Developer Guide unless noted):

* "HTTP response headers that CloudFront removes or adds" (``Via``,
  ``X-Cache``, ``X-Amz-Cf-Id``, ``X-Amz-Cf-Pop``, ``Age``);
* "Add or remove HTTP headers in CloudFront responses with a policy" and
  "Understand response headers policies" (CORS, see :mod:`plantcdn.cdncors`);
* "Restrict access with signed URLs and signed cookies" (see
  :mod:`plantcdn.cfsigning`); signatures are checked before anything else;
* "How CloudFront processes partial requests for an object (range GETs)" and
  "Caching and availability: conditional requests" (206/416, 304/412 with the
  rules of S3 GetObject in :mod:`plantcdn.conditions`); several ranges in
  ascending order without overlap are one 206 ``multipart/byteranges``
  (RFC 9110 section 14.6), any other list of ranges the whole object, 200;
* "Request and response behavior for Amazon S3 origins", "GET requests that
  include a body": such a request is refused with 403;
* "Restrict access to an Amazon S3 origin": without ``s3:ListBucket`` a
  missing object is 403 ``AccessDenied`` (``PLANTCDN_CDN_MISSING=403``),
  with it 404 ``NoSuchKey`` (the default).
"""

from __future__ import annotations

import base64
import errno
import mimetypes
import os
import random
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape

from attrs import frozen
from twisted.internet.interfaces import IPushProducer
from twisted.web import static
from twisted.web.http import datetimeToString
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from plantcdn.call import new_request_ids, parse_query
from plantcdn.cdncache import BodyCache, EdgeCache, MetaCache, cache_ttl
from plantcdn.cdncors import cors_headers, preflight_headers
from plantcdn.cfsigning import (
    CONTENT_TYPE as CLOUDFRONT_ERROR_TYPE,
)
from plantcdn.cfsigning import (
    CloudFrontDenied,
    CloudFrontPublicKey,
    load_public_keys,
    verify_signed_request,
)
from plantcdn.conditions import NOT_MODIFIED, byte_ranges, evaluate_preconditions, parse_range
from plantcdn.config import Config
from plantcdn.errors import S3Error, render_error_xml
from plantcdn.keys import is_storable_key
from plantcdn.objects import check_readable, object_headers
from plantcdn.request import AmzHeaders
from plantcdn.storage import Bucket, ObjectMeta, Storage

__all__ = ["ALLOWED_METHODS", "CdnResource", "ServedVersion"]

#: A read-only distribution's "Allowed HTTP methods: GET, HEAD, OPTIONS".
ALLOWED_METHODS = (b"GET", b"HEAD", b"OPTIONS")

#: Bodies up to this size are read with one ``pread`` and written at once;
#: larger ones stream through a pull producer in chunks of this size, so a
#: 1 GiB object never holds more than one chunk per connection in memory.
CHUNK = 256 * 1024

#: The edge's memory for small bodies (see :class:`~plantcdn.cdncache.BodyCache`):
#: bounded so that a worker's peak RSS stays well under 100 MiB.
BODY_CACHE_BYTES = 16 * 1024 * 1024
BODY_CACHE_OBJECT = 256 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)

#: Headers of a 304: what RFC 9110 says a 304 must repeat, as S3 sends them.
_NOT_MODIFIED_HEADERS = (b"ETag", b"Last-Modified", b"Cache-Control", b"Expires")

_X_CACHE = {
    word: f"{word} from cloudfront".encode("ascii") for word in ("Hit", "Miss", "RefreshHit")
}

#: "X-Amz-Cf-Pop": the edge location; three-letter code, number, "-C1"/"-P1".
#: "LCL" (local) is deliberately no real airport code.
CF_POP = "LCL50-C1"
_CF_POP = CF_POP.encode("ascii")


@frozen
class ServedVersion:
    """What ``/cdn`` knows about one stored version of an object, computed once.

    ``headers`` are the encoded S3 object headers (without Content-Length);
    ``ttl`` is how long an edge keeps this version (from its Cache-Control);
    ``wire`` is *headers* as the lines Twisted would write for them (see
    :meth:`CdnResource.plain_response`).
    """

    meta: ObjectMeta
    headers: tuple[tuple[bytes, bytes], ...]
    ttl: int
    wire: bytes = b""


class _Refusal(Exception):
    """Internal: an S3 or CloudFront error to render instead of the object."""

    def __init__(self, status: int, body: bytes, content_type: bytes, headers: dict[str, str],
                 server: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.server = server


class CdnResource(static.File):
    """The long-term bucket at ``/cdn/``: only objects, never anything else.

    ``isLeaf`` stops Twisted's child traversal: the whole remaining path is
    read from ``request.path`` and decoded exactly once, here.
    """

    isLeaf = True

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        clock: Callable[[], float],
        mount: bytes = b"/cdn/",
        meta_cache_size: int = 4096,
        edge_cache_size: int = 10_000,
        body_cache_bytes: int = BODY_CACHE_BYTES,
    ) -> None:
        self.bucket: Bucket = storage.bucket(config.longterm_bucket)
        super().__init__(str(self.bucket.root), defaultType="binary/octet-stream")
        self.config = config
        self.storage = storage
        self.clock = clock
        self.mount = mount
        self.id_pattern = config.tenant_id_pattern
        self.default_cache_control = config.cdn_cache_control
        self.missing_status = config.cdn_missing_status
        self.cors = config.cdn_cors
        self.public_keys: dict[str, CloudFrontPublicKey] = (
            load_public_keys(dict(config.cloudfront_public_keys))
            if config.cloudfront_public_keys
            else {}
        )
        self.scheme = urlsplit(config.base_url).scheme or "http"
        self.versions: MetaCache[ServedVersion] = MetaCache(meta_cache_size)
        self.edge = EdgeCache(clock, edge_cache_size)
        self.bodies = BodyCache(body_cache_bytes, BODY_CACHE_OBJECT)
        self._root_prefix = os.path.join(str(self.bucket.root), "")
        # "Via: 1.1 <id>.cloudfront.net (CloudFront)": one edge server per process.
        self.via = f"1.1 {os.urandom(16).hex()}.cloudfront.net (CloudFront)".encode("ascii")

    # -- what File must never do ------------------------------------------------

    def getChild(self, path: bytes, request: IRequest) -> CdnResource:  # noqa: N802
        """A leaf has no children; anything below resolves in :meth:`render`."""
        return self

    def directoryListing(self) -> Any:  # noqa: N802
        raise RuntimeError("/cdn never lists folders")

    def listNames(self) -> list[str]:  # noqa: N802
        return []

    # -- dispatch -------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        """GET, HEAD and OPTIONS; anything else is refused as the distribution would."""
        self._edge_headers(request)
        method = request.method
        try:
            if method not in ALLOWED_METHODS:
                raise _method_not_allowed()
            if method == b"GET" and _has_body(request):
                raise _get_with_body()
            if self.public_keys:
                self._verify_signature(request)
            if method == b"OPTIONS":
                return self._preflight(request)
            return self._serve(request, head=method == b"HEAD")
        except _Refusal as refusal:
            return self._refuse(request, refusal)

    # -- the object -----------------------------------------------------------

    def _serve(self, request: Request, *, head: bool) -> bytes | int:
        key = self._key_of(request.path)
        if key is None:
            raise self._missing(self._path_text(request.path))
        hit = self._cached(key)
        if hit is not None:
            st, version, body = hit
            span = self._prepare(request, key, st, version)
            if span is None or head:
                return b""
            if isinstance(span, _Multipart):
                request.write(span.join(body))
                request.finish()
                return NOT_DONE_YET
            offset, length = span
            if length:
                request.write(body if length == len(body) else body[offset:offset + length])
                request.finish()
                return NOT_DONE_YET
            return b""
        fd = self._open(key)
        if fd is None:
            raise self._missing(key)
        # From here on this method owns fd: it is closed exactly once, either
        # below or by the producer it is handed to.
        try:
            st = os.fstat(fd)
            version = self._version(key, st, fd)
            if not head:
                # S3, the origin, refuses to read an archived object before a restore;
                # CloudFront passes that on (and never keeps such a body in its memory).
                try:
                    check_readable(version.meta)
                except S3Error as error:
                    raise self._s3_refusal(error) from None
            span = self._prepare(request, key, st, version)
        except BaseException:
            _close(fd)
            raise
        if span is None or head:  # 304 Not Modified, or no body to send
            _close(fd)
            return b""
        if isinstance(span, _Multipart):
            _RangeProducer(request, fd, span.parts, span.tail).start()
            return NOT_DONE_YET
        offset, length = span
        if length == 0:
            _close(fd)
            return b""
        if length > CHUNK:
            _RangeProducer(request, fd, ((b"", offset, length),)).start()
            return NOT_DONE_YET
        try:
            data = _read_exactly(fd, offset, length)
        finally:
            _close(fd)
        if data is None:  # the file shrank since fstat: a hand edit
            raise self._s3_refusal(S3Error("InternalError"))
        if length == st.st_size:
            self.bodies.put(_identity(key, st), data)
        request.write(data)
        request.finish()
        return NOT_DONE_YET

    def _cached(self, key: str) -> tuple[os.stat_result, ServedVersion, bytes] | None:
        """The remembered body and headers of *key*, if its file is still that version.

        One ``lstat`` (no file opened) compares the file's identity with the
        cached one; anything else -- a new write, a hand edit, a symlink --
        takes the full path through :meth:`_open`.
        """
        try:
            st = os.lstat(self._root_prefix + key)
        except (OSError, ValueError):
            return None
        body = self.bodies.get(_identity(key, st))
        if body is None:
            return None
        version = self.versions.get(self._version_key(key, st))
        return (st, version, body) if version is not None else None

    def plain_response(self, raw_path: bytes) -> tuple[bytes, bytes] | None:
        """The head and body answering a plain ``GET`` of *raw_path* from memory, or ``None``.

        A plain GET (see :mod:`plantcdn.plainget`) carries no header that
        :meth:`_serve` reads, so for a body in the edge's memory whose file is
        still that version, the answer is fixed but for ``Date``,
        ``X-Amz-Cf-Id``, ``X-Cache`` and ``Age``: the same bytes, header for
        header, that :meth:`render` and Twisted would write, at a fraction of
        the cost.  Signed distributions always take :meth:`render`.
        """
        if self.public_keys:
            return None
        key = self._key_of(raw_path)
        if key is None:
            return None
        hit = self._cached(key)
        if hit is None:
            return None
        st, version, body = hit
        if version.meta.size != len(body) or not version.wire:
            return None
        word, age = self.edge.status((key, st.st_ino, version.meta.etag), version.ttl)
        head = b"".join((
            b"HTTP/1.1 200 OK\r\nServer: AmazonS3\r\nDate: ", _http_date(),
            b"\r\nVia: ", self.via,
            b"\r\nx-amz-cf-pop: ", _CF_POP, b"\r\nx-amz-cf-id: ", _cf_id(),
            b"\r\nX-Cache: ", _X_CACHE[word],
            b"\r\n" if age is None else b"\r\nAge: %d\r\n" % age,
            version.wire,
            b"Content-Length: %d\r\n\r\n" % len(body),
        ))
        return head, body

    def _prepare(
        self, request: Request, key: str, st: os.stat_result, version: ServedVersion
    ) -> tuple[int, int] | _Multipart | None:
        """Set the response status and headers; return what to send (None: 304).

        ``(offset, length)`` of the object, or, for several ranges, the parts
        of a ``multipart/byteranges`` body.  ``If-Range`` is not looked at,
        for one range as for several (plantcdn does not implement it).
        """
        meta = version.meta
        set_header = request.responseHeaders.setRawHeaders
        word, age = self.edge.status((key, st.st_ino, meta.etag), version.ttl)
        set_header(b"X-Cache", [_X_CACHE[word]])
        if age is not None:
            set_header(b"Age", [str(age).encode("ascii")])
        if self.cors is not None:
            self._cors(request)
        try:
            verdict = evaluate_preconditions(
                _conditional_headers(request), meta.etag, meta.last_modified, now=self.clock()
            )
            ranges: list[tuple[int, int]] | None = None
            header = request.getHeader(b"range")
            if header is None or b"," not in header:
                span = parse_range(_text(header), meta.size)
            else:
                span, ranges = None, byte_ranges(header.decode("latin-1"), meta.size)
                if ranges is not None and len(ranges) == 1:
                    span, ranges = ranges[0], None
        except S3Error as error:
            raise self._s3_refusal(error) from None
        if verdict == NOT_MODIFIED:
            request.setResponseCode(304)
            for name, value in version.headers:
                if name in _NOT_MODIFIED_HEADERS:
                    set_header(name, [value])
            return None
        for name, value in version.headers:
            set_header(name, [value])
        if ranges is not None:
            content_type = request.responseHeaders.getRawHeaders(b"Content-Type", [b""])[0]
            parts = _Multipart.of(ranges, meta.size, content_type)
            request.setResponseCode(206)
            set_header(b"Content-Type", [b"multipart/byteranges; boundary=" + parts.boundary])
            set_header(b"Content-Length", [str(parts.length).encode("ascii")])
            return parts
        offset, length = 0, meta.size
        if span is not None:
            offset, length = span[0], span[1] - span[0] + 1
            request.setResponseCode(206)
            set_header(b"Content-Range", [f"bytes {span[0]}-{span[1]}/{meta.size}".encode()])
        set_header(b"Content-Length", [str(length).encode("ascii")])
        return offset, length

    def _path_text(self, raw_path: bytes) -> str:
        """The requested key as text for an error body, whatever bytes it holds."""
        rest = raw_path[len(self.mount):] if raw_path.startswith(self.mount) else raw_path
        text = unquote_to_bytes(rest).decode("utf-8", "backslashreplace")
        return text.encode("unicode_escape").decode("ascii") if _has_control(text) else text

    def _key_of(self, raw_path: bytes) -> str | None:
        """The object key a raw request path names, or ``None`` if it names none.

        The path is percent-decoded exactly once (``%2F`` is a ``/``, as in S3
        keys; ``%252e`` stays the three characters ``%2e``), must be UTF-8, and
        must be a key the tenant layout allows: no empty, ``.`` or ``..``
        segments, no backslashes, no NUL or control characters.
        """
        if not raw_path.startswith(self.mount):
            return None
        try:
            key = unquote_to_bytes(raw_path[len(self.mount):]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not is_storable_key(key, self.id_pattern):
            return None
        return key

    def _open(self, key: str) -> int | None:
        """Open the object file, following no symlink; a symlink takes Storage's slow path."""
        parts = key.split("/")
        try:
            fd = os.open(self.bucket.root, _DIR_FLAGS)
        except OSError:
            return None
        try:
            for name in parts[:-1]:
                parent = fd
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                os.close(parent)
            parent = fd
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
            os.close(parent)
        except OSError as exc:
            _close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                return self._open_via_storage(key)
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                _close(fd)
                return None
        except OSError:
            _close(fd)
            return None
        return fd

    def _open_via_storage(self, key: str) -> int | None:
        """Symlinks placed by hand: Storage follows only those that stay inside the bucket."""
        opened = self.storage.open(self.bucket, key)
        if opened is None:
            return None
        file, _found = opened
        try:
            return os.dup(file.fileno())
        finally:
            file.close()

    def _version_key(self, key: str, st: os.stat_result) -> tuple[str, str, int, int, int]:
        return (self.bucket.name, key, st.st_ino, st.st_size, st.st_mtime_ns)

    def _version(self, key: str, st: os.stat_result, fd: int | None = None) -> ServedVersion:
        """The (cached) headers of the version whose inode, size and mtime *st* shows."""
        cache_key = self._version_key(key, st)
        version = self.versions.get(cache_key)
        if version is None:
            # Metadata is named after the inode of the very file opened, so old
            # bytes are never paired with new metadata (see plantcdn.storage).
            meta = self.storage.read_meta(self.bucket, key, st, fd)
            headers = object_headers(meta)
            if _described_by_filesystem(meta, st):
                # A file placed by hand has no stored type: guess from its name.
                headers["Content-Type"] = (
                    mimetypes.guess_type(key, strict=False)[0] or "binary/octet-stream"
                )
            if "Cache-Control" not in headers and self.default_cache_control:
                headers["Cache-Control"] = self.default_cache_control
            encoded = _encode(headers.items())
            version = ServedVersion(
                meta=meta,
                headers=encoded,
                ttl=cache_ttl(headers.get("Cache-Control")),
                wire=_header_lines(encoded),
            )
            self.versions.put(cache_key, version)
        return version

    # -- signed URLs and cookies, CORS preflight ---------------------------------

    def _verify_signature(self, request: Request) -> None:
        uri = request.uri.decode("latin-1")
        host = _text(request.getHeader(b"host")) or self.config.base_host
        scheme = "https" if request.isSecure() else self.scheme
        _pairs, query = parse_query(uri.partition("?")[2])
        cookies = {
            k.decode("latin-1"): v.decode("latin-1").strip('"')
            for k, v in request.received_cookies.items()
        }
        address = request.getClientAddress()
        try:
            verify_signed_request(
                resource_url=f"{scheme}://{host}{uri}",
                query=query,
                cookies=cookies,
                client_ip=getattr(address, "host", ""),
                now=self.clock(),
                public_keys=self.public_keys,
            )
        except CloudFrontDenied as denied:
            raise _Refusal(denied.status, denied.render_xml(),
                           CLOUDFRONT_ERROR_TYPE.encode("ascii"), {}, b"CloudFront") from None

    def _preflight(self, request: Request) -> bytes:
        """Answer a CORS preflight from the configured response headers policy."""
        headers = preflight_headers(
            self.cors,
            _text(request.getHeader(b"origin")),
            _text(request.getHeader(b"access-control-request-method")),
            _text(request.getHeader(b"access-control-request-headers")),
        )
        if headers is None:
            message = (
                "CORSResponse: CORS is not enabled for this bucket." if self.cors is None else None
            )
            raise self._s3_refusal(S3Error("AccessForbidden", message))
        request.responseHeaders.setRawHeaders(b"X-Cache", [b"Miss from cloudfront"])
        for name, value in headers.items():
            request.responseHeaders.setRawHeaders(name.encode("ascii"), [value.encode("latin-1")])
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"0"])
        return b""

    # -- responses ----------------------------------------------------------------

    def _edge_headers(self, request: Request) -> None:
        """Headers every response through a CloudFront edge carries."""
        set_header = request.responseHeaders.setRawHeaders
        set_header(b"Server", [b"AmazonS3"])
        set_header(b"Via", [self.via])
        set_header(b"X-Amz-Cf-Pop", [_CF_POP])
        set_header(b"X-Amz-Cf-Id", [_cf_id()])

    def _cors(self, request: Request) -> None:
        """The policy's CORS headers, on every answer to a CORS request (errors too)."""
        origin = request.getHeader(b"origin")
        if origin is not None:
            for name, value in cors_headers(self.cors, origin.decode("latin-1")).items():
                request.responseHeaders.setRawHeaders(
                    name.encode("ascii"), [value.encode("latin-1")]
                )

    def _missing(self, key: str) -> _Refusal:
        if self.missing_status == 403:
            return self._s3_refusal(S3Error("AccessDenied"))
        return self._s3_refusal(S3Error("NoSuchKey", extra={"Key": key}))

    def _s3_refusal(self, error: S3Error) -> _Refusal:
        """S3's own error document, which CloudFront passes on unchanged."""
        request_id, host_id = new_request_ids()
        body = render_error_xml(error, request_id=request_id, host_id=host_id)
        return _Refusal(error.status, body, b"application/xml", error.headers, b"AmazonS3")

    def _refuse(self, request: Request, refusal: _Refusal) -> bytes:
        headers = request.responseHeaders
        for name in (b"ETag", b"Last-Modified", b"Accept-Ranges", b"Content-Encoding", b"Age",
                     b"Content-Range"):
            headers.removeHeader(name)
        request.setResponseCode(refusal.status)
        headers.setRawHeaders(b"Server", [refusal.server])
        headers.setRawHeaders(b"X-Cache", [b"Error from cloudfront"])
        headers.setRawHeaders(b"Content-Type", [refusal.content_type])
        for text, value in refusal.headers.items():
            headers.setRawHeaders(text.encode("latin-1"), [value.encode("latin-1")])
        if self.cors is not None:
            self._cors(request)
        if request.method == b"HEAD":
            headers.setRawHeaders(b"Content-Length", [b"0"])
            return b""
        return refusal.body


def _method_not_allowed() -> _Refusal:
    """405 for a method a GET/HEAD/OPTIONS distribution does not allow.

    CloudFront answers such a request with its own HTML error page ("This
    distribution is not configured to allow the HTTP request method that was
    used for this request. The distribution supports only cachable requests.");
    real CloudFront sends it with status 403, plantcdn with 405 and ``Allow``.
    """
    return _Refusal(
        405,
        _error_page(
            405,
            "This distribution is not configured to allow the HTTP request method that was "
            "used for this request. The distribution supports only cachable requests.",
        ),
        b"text/html",
        {"Allow": "GET, HEAD, OPTIONS"},
        b"CloudFront",
    )


def _get_with_body() -> _Refusal:
    """403 for a GET that carries a body, with CloudFront's own error page.

    "If a viewer GET request includes a body, CloudFront returns an HTTP
    status code 403 (Forbidden) to the viewer" (CloudFront Developer Guide,
    "Request and response behavior for Amazon S3 origins", "GET requests that
    include a body").  That page only states the status; the text follows
    CloudFront's generic "Bad request." error page.
    """
    return _Refusal(
        403,
        _error_page(
            403,
            "Bad request.\nWe can't connect to the server for this app or website at this "
            "time. There might be too much traffic or a configuration error. Try again later, "
            "or contact the app or website owner.",
        ),
        b"text/html",
        {},
        b"CloudFront",
    )


def _error_page(status: int, message: str) -> bytes:
    """CloudFront's HTML error page ("The request could not be satisfied")."""
    request_id = _cf_id().decode("ascii")
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
        '"http://www.w3.org/TR/html4/loose.dtd">\n'
        '<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n'
        "<TITLE>ERROR: The request could not be satisfied</TITLE>\n"
        f"</HEAD><BODY>\n<H1>{status} ERROR</H1>\n<H2>The request could not be satisfied.</H2>\n"
        '<HR noshade size="1px">\n'
        f"{escape(message)}\n"
        '<BR clear="all">\n<HR noshade size="1px">\n<PRE>\n'
        "Generated by cloudfront (CloudFront)\n"
        f"Request ID: {escape(request_id)}\n"
        "</PRE>\n<ADDRESS>\n</ADDRESS>\n</BODY></HTML>"
    ).encode("ascii")


def _has_body(request: Request) -> bool:
    """Whether the request announced a body: a non-zero Content-Length, or chunked.

    Twisted has already read (and, past 100 kB, spooled to a temporary file)
    whatever body there was, so the 403 leaves no unread bytes on a kept-alive
    connection.  A body past the spool limit that
    :meth:`plantcdn.s3app.S3App.body_router` sets for ``/cdn`` never gets here:
    it is refused as it arrives (S3's 400 ``MaxMessageLengthExceeded``, then
    the connection closes).
    """
    headers = request.requestHeaders
    if headers.hasHeader(b"transfer-encoding"):
        return True
    length = headers.getRawHeaders(b"content-length")
    # Twisted accepts only digits here; "000" is no body, and no int() of a huge value.
    return length is not None and length[0].strip().lstrip(b"0") != b""


@frozen
class _Multipart:
    """A ``multipart/byteranges`` body (RFC 9110 section 14.6) of several ranges of an object.

    ``parts`` are ``(separator, offset, length)``: the separator (boundary and
    the part's Content-Type and Content-Range) is sent before the ``length``
    bytes from ``offset``; ``tail`` closes the body.  Only these small
    separators are held in memory; the bytes come from the file or the edge's
    copy as they are sent.
    """

    boundary: bytes
    parts: tuple[tuple[bytes, int, int], ...]
    tail: bytes

    @classmethod
    def of(cls, ranges: Sequence[tuple[int, int]], size: int, content_type: bytes) -> _Multipart:
        boundary = random.randbytes(12).hex().encode("ascii")
        parts = tuple(
            (
                b"%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                % (b"\r\n" if index else b"", boundary, content_type, first, last, size),
                first,
                last - first + 1,
            )
            for index, (first, last) in enumerate(ranges)
        )
        return cls(boundary, parts, b"\r\n--%s--\r\n" % boundary)

    @property
    def length(self) -> int:
        """The Content-Length of the whole body."""
        return sum(len(separator) + length for separator, _, length in self.parts) + len(
            self.tail
        )

    def join(self, body: bytes) -> bytes:
        """The whole multipart body, cut from an object held in memory."""
        pieces: list[bytes] = []
        for separator, offset, length in self.parts:
            pieces += (separator, body[offset:offset + length])
        pieces.append(self.tail)
        return b"".join(pieces)


@implementer(IPushProducer)
class _RangeProducer:
    """Writes spans of an open file, each after its separator, while the transport wants them.

    One range (or a large whole object) is one span with no separator; several
    ranges are the parts of a :class:`_Multipart`, and *tail* ends the body.
    A push producer: it writes chunks until the transport pauses it (its buffer
    is full) and continues on resume, so memory per connection stays at about
    one chunk and no cooperator (global reactor) is involved.  It is bounded by
    the length announced in Content-Length: a file that shrank under us (a
    hand edit) aborts the connection rather than stalling or lying.
    (Twisted's ``MultipleRangeStaticProducer`` would loop forever on such a
    file, and reads through a file object; hence this one.)
    """

    def __init__(
        self, request: Request, fd: int, spans: Iterable[tuple[bytes, int, int]], tail: bytes = b""
    ) -> None:
        self.request: Request | None = request
        self.fd: int | None = fd
        self.spans: Iterator[tuple[bytes, int, int]] = iter(spans)
        self.tail = tail
        self.offset = 0
        self.remaining = 0
        self.paused = False
        self._producing = False

    def start(self) -> None:
        assert self.request is not None
        self.request.notifyFinish().addBoth(lambda _: self._close())
        self.request.registerProducer(self, True)
        self._produce()

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._produce()

    def stopProducing(self) -> None:  # noqa: N802
        self.request = None
        self._close()

    def _produce(self) -> None:
        if self._producing:  # request.write may call back into us
            return
        self._producing = True
        try:
            while not self.paused and self.request is not None and self.fd is not None:
                if self.remaining == 0:
                    span = next(self.spans, None)
                    if span is not None:
                        separator, self.offset, self.remaining = span
                        if separator:
                            self.request.write(separator)
                        continue
                    request, self.request = self.request, None
                    if self.tail:
                        request.write(self.tail)
                    request.unregisterProducer()
                    request.finish()
                    self._close()
                    return
                try:
                    data = os.pread(self.fd, min(CHUNK, self.remaining), self.offset)
                except OSError:
                    data = b""
                if not data:
                    request, self.request = self.request, None
                    self._close()
                    request.unregisterProducer()
                    _abort(request)
                    return
                self.offset += len(data)
                self.remaining -= len(data)
                self.request.write(data)
        finally:
            self._producing = False

    def _close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            _close(fd)


def _read_exactly(fd: int, offset: int, length: int) -> bytes | None:
    """``length`` bytes from ``offset``, or ``None`` if the file is shorter now."""
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    chunks = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            return None
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _identity(key: str, st: os.stat_result) -> tuple[str, int, int, int, int]:
    """A stored version of *key*: every write renames a new inode into place."""
    return (key, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _conditional_headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name in ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since"):
        value = request.getHeader(name.encode("ascii"))
        if value is not None:
            headers[name] = value.decode("latin-1")
    return headers


def _described_by_filesystem(meta: ObjectMeta, st: os.stat_result) -> bool:
    """Whether *meta* is Storage's stand-in for a file without stored metadata."""
    return meta.etag == f'"{st.st_ino:x}{st.st_size:x}{int(st.st_mtime_ns):x}"'


def _encode(items: Iterable[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in items
    )


def _cf_id() -> bytes:
    """X-Amz-Cf-Id: 56 characters of URL-safe base64, unique per response.

    An opaque request id, not a secret: ``random`` (seeded from the OS per
    process) costs no system call, where ``os.urandom`` cost one per response.
    """
    return base64.urlsafe_b64encode(random.randbytes(40))


_date_cache: list[Any] = [None, b""]


def _http_date() -> bytes:
    """Twisted's ``Date`` value for now, formatted once per second."""
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache[0], _date_cache[1] = second, datetimeToString(second)
    return _date_cache[1]


def _header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """*headers* as Twisted writes them: its name case, then plantcdn's lower-case x-amz-*."""
    wire = AmzHeaders()
    for name, value in headers:
        wire.setRawHeaders(name, [value])
    pairs = wire.getAllRawHeaders()
    return b"".join(b"%s: %s\r\n" % (name, value) for name, values in pairs for value in values)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _abort(request: Request) -> None:
    """A response already under way cannot carry an error: cut the connection."""
    transport: Any = getattr(getattr(request, "channel", None), "transport", None)
    if transport is not None:
        transport.abortConnection()
