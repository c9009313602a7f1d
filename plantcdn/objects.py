"""PutObject, GetObject and HeadObject.

Each handler takes the verified call, does its one job, and leaves status
codes for errors to the :class:`~plantcdn.errors.S3Error` it raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO
from urllib.parse import parse_qsl

from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import NoRangeStaticProducer, SingleRangeStaticProducer

from plantcdn.awschunked import AwsChunkedDecoder
from plantcdn.call import Handler, S3Call, Services
from plantcdn.conditions import NOT_MODIFIED, etag_matches, evaluate_preconditions, parse_range
from plantcdn.digests import ALGORITHMS, DigestResult, PayloadDigest, checksums_from_headers
from plantcdn.errors import S3Error
from plantcdn.partnumber import part_span
from plantcdn.storage import Bucket, ObjectMeta, StoredObject
from plantcdn.streaming import streamed_sink
from plantcdn.verification import user_metadata
from plantcdn.writer import MAX_PUT_SIZE, UploadWriter, pump_file

__all__ = ["HANDLERS", "object_headers"]

#: Canned ACLs (S3 User Guide, "Access control list (ACL) overview", "Canned ACL").
CANNED_ACLS = frozenset(
    {
        "private", "public-read", "public-read-write", "aws-exec-read", "authenticated-read",
        "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write",
    }
)  # fmt: skip
STORAGE_CLASSES = frozenset(
    {
        "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
        "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
    }
)  # fmt: skip
STREAMING_MODES = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    }
)
#: GetObject's ``response-*`` query parameters and the header each overrides.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}




# -- PutObject ---------------------------------------------------------------


#: ``x-amz-server-side-encryption`` values S3 knows. Objects are stored as they
#: are (SSE-S3 is S3's default); the header is only checked.
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
#: Storage classes whose objects must be restored before GetObject can read them.
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_SSE_C = "x-amz-server-side-encryption-customer-algorithm"
_OBJECT_LOCK = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)


def check_write_headers(call: S3Call) -> None:
    """Header values PutObject (and its relatives) refuse before reading a byte."""
    headers = call.headers
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in CANNED_ACLS:
        raise S3Error("InvalidArgument", extra={"ArgumentName": "x-amz-acl", "ArgumentValue": acl})
    check_object_settings(headers)
    tagging = headers.get("x-amz-tagging")
    if tagging:
        from plantcdn.subresources import tags_from_header, validate_tags  # imports this module

        validate_tags(tags_from_header(tagging))


def check_object_settings(headers: Mapping[str, str]) -> None:
    """The settings a new object may ask for, from request headers or the same-named
    POST Object form fields (lower-case names): storage class, encryption, object
    lock and website redirect."""
    storage_class = headers.get("x-amz-storage-class")
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", extra={"StorageClassRequested": storage_class})
    sse = headers.get("x-amz-server-side-encryption")
    if sse is not None and sse not in SSE_ALGORITHMS:
        raise S3Error(
            "InvalidArgument",
            "The encryption method specified is not supported",
            extra={"ArgumentName": "x-amz-server-side-encryption", "ArgumentValue": sse},
        )
    if _SSE_C in headers:
        # plantcdn speaks plain HTTP, over which S3 refuses customer-provided keys.
        raise S3Error(
            "InvalidRequest",
            "Requests specifying Server Side Encryption with Customer provided keys must be "
            "made over a secure connection.",
        )
    if any(name in headers for name in _OBJECT_LOCK):
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    redirect = headers.get("x-amz-website-redirect-location")
    if redirect is not None and not redirect.startswith(("/", "http://", "https://")):
        raise S3Error(
            "InvalidRedirectLocation",
            "The website redirect location must have a prefix of 'http://' or 'https://' or '/'.",
        )


def declared_length(call: S3Call) -> int:
    """The body size the client announced; S3 needs Content-Length for uploads."""
    text = call.headers.get("content-length")
    if text is None:
        raise S3Error("MissingContentLength")
    try:
        length = int(text)
    except ValueError:
        raise S3Error("InvalidArgument", extra={"ArgumentName": "Content-Length"}) from None
    decoded = call.headers.get("x-amz-decoded-content-length")
    size = length
    if decoded is not None:
        try:
            size = int(decoded)
        except ValueError:
            raise S3Error(
                "InvalidArgument", extra={"ArgumentName": "x-amz-decoded-content-length"}
            ) from None
    if size > MAX_PUT_SIZE:
        raise S3Error(
            "EntityTooLarge",
            extra={"ProposedSize": str(size), "MaxSizeAllowed": str(MAX_PUT_SIZE)},
        )
    return length


def payload_reader(call: S3Call) -> tuple[PayloadDigest, AwsChunkedDecoder | None]:
    """The digest (and aws-chunked decoder) the signed payload mode calls for."""
    assert call.auth is not None
    mode = call.auth.payload_hash
    decoder: AwsChunkedDecoder | None = None
    trailer = call.headers.get("x-amz-trailer")
    trailer_algorithm: str | None = None
    if trailer:
        name = trailer.strip().lower()
        if not name.startswith("x-amz-checksum-") or name[15:].upper() not in ALGORITHMS:
            raise S3Error(
                "InvalidRequest", "The value specified in the x-amz-trailer header is not supported"
            )
        trailer_algorithm = name[15:].upper()
    if mode in STREAMING_MODES:
        decoded = call.headers.get("x-amz-decoded-content-length")
        decoder = AwsChunkedDecoder(
            mode=mode,
            auth=call.auth,
            declared_trailers=[trailer.strip().lower()] if trailer else [],
            decoded_length=int(decoded) if decoded is not None else None,
        )
        sha256 = None
    elif mode == "UNSIGNED-PAYLOAD":
        sha256 = None
    else:
        sha256 = mode
    checksums = checksums_from_headers(call.headers)
    if "x-amz-sdk-checksum-algorithm" in call.headers and not checksums and not trailer:
        raise S3Error(
            "InvalidRequest",
            "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or "
            "x-amz-trailer headers were found.",
        )
    digest = PayloadDigest(
        content_md5=call.headers.get("content-md5"),
        content_sha256=sha256,
        checksums=checksums,
        trailer_algorithm=trailer_algorithm,
    )
    return digest, decoder


def stored_content_encoding(value: str | None) -> str | None:
    """Content-Encoding without the ``aws-chunked`` transport coding."""
    if value is None:
        return None
    kept = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "aws-chunked"]
    return ",".join(kept) or None


def describe_upload(
    call: S3Call, result: DigestResult, *, user_meta: Mapping[str, str], now: float
) -> ObjectMeta:
    """The metadata an upload stores, from its headers and its digests."""
    h = call.headers
    return ObjectMeta(
        etag=f'"{result.md5_hex}"',
        size=result.size,
        last_modified=now,
        content_type=h.get("content-type") or "binary/octet-stream",
        content_encoding=stored_content_encoding(h.get("content-encoding")),
        content_disposition=h.get("content-disposition"),
        content_language=h.get("content-language"),
        cache_control=h.get("cache-control"),
        expires=h.get("expires"),
        user_metadata=dict(user_meta),
        checksums=dict(result.checksums),
        checksum_type="FULL_OBJECT" if result.checksums else None,
        acl=h.get("x-amz-acl"),
        tagging=h.get("x-amz-tagging"),
        storage_class=h.get("x-amz-storage-class"),
        website_redirect_location=h.get("x-amz-website-redirect-location"),
    )


def check_write_conditions(svc: Services, call: S3Call, bucket: Bucket, key: str) -> None:
    """``If-None-Match: *`` and ``If-Match`` on writes (S3 User Guide, "Conditional writes")."""
    if_none_match = call.headers.get("if-none-match")
    if_match = call.headers.get("if-match")
    if if_none_match is None and if_match is None:
        return
    existing = svc.storage.find(bucket, key)
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise S3Error("NotImplemented", extra={"Header": "If-None-Match"})
        if existing is not None:
            raise S3Error("PreconditionFailed", extra={"Condition": "If-None-Match"})
    if if_match is not None:
        if existing is None:
            raise S3Error("NoSuchKey", extra={"Key": key})
        if not etag_matches(if_match, existing.meta.etag):
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Match"})


def prepare_put(svc: Services, call: S3Call) -> UploadWriter:
    """Every check PutObject makes before reading a byte of the body, then its writer."""
    key = call.key
    svc.verifier.check_write_key(key)
    bucket = svc.bucket(call)
    check_write_headers(call)
    declared_length(call)
    user_metadata(call.headers)
    digest, decoder = payload_reader(call)
    check_write_conditions(svc, call, bucket, key)
    return UploadWriter(svc.storage, bucket, key, digest=digest, decoder=decoder)


async def put_object(svc: Services, call: S3Call) -> bytes:
    writer: UploadWriter | None = streamed_sink(call)
    if writer is None:
        writer = prepare_put(svc, call)
        await pump_file(call.request.content, writer, svc.cooperator)
    user_meta = user_metadata(call.headers)
    now = svc.clock.seconds()

    def describe(result: DigestResult) -> ObjectMeta:
        return describe_upload(call, result, user_meta=user_meta, now=now)

    meta = await publish(svc, call, writer, describe)
    call.set_header("ETag", meta.etag)
    set_stored_headers(call, meta)
    call.set_header("Content-Length", "0")
    return b""


async def publish(
    svc: Services,
    call: S3Call,
    writer: UploadWriter,
    describe: Callable[[DigestResult], ObjectMeta],
) -> ObjectMeta:
    """Publish *writer*'s complete body (PutObject, CopyObject).

    A conditional write is checked again and published in one step of the
    reactor thread, so nothing comes between; one that fails now drops the
    body's temporary file.  Others are published durably (off the reactor
    thread when fsync is on).
    """
    if "if-none-match" not in call.headers and "if-match" not in call.headers:
        return await writer.finish_durably(describe, svc.clock)
    try:
        check_write_conditions(svc, call, writer.bucket, writer.key)
    except S3Error:
        writer.abort()
        raise
    return writer.finish(describe, exclusive="if-none-match" in call.headers)


def set_stored_headers(call: S3Call, meta: ObjectMeta) -> None:
    """What a write's answer says of the object it stored: its checksums (and their
    type) and SSE-S3, with which S3 encrypts every new object."""
    for algorithm, value in meta.checksums.items():
        call.set_header(f"x-amz-checksum-{algorithm.lower()}", value)
    if meta.checksum_type:
        call.set_header("x-amz-checksum-type", meta.checksum_type)
    call.set_header("x-amz-server-side-encryption", "AES256")


def check_readable(meta: ObjectMeta, message: str | None = None) -> None:
    """403 ``InvalidObjectState`` for an archived object (GLACIER, DEEP_ARCHIVE):
    S3 reads its bytes (GetObject, a copy's source) only after a RestoreObject."""
    if meta.storage_class in ARCHIVED_CLASSES:
        raise S3Error("InvalidObjectState", message, extra={"StorageClass": meta.storage_class})


# -- GetObject / HeadObject -----------------------------------------------------


def object_headers(meta: ObjectMeta) -> dict[str, str]:
    """The headers S3 (and CloudFront in front of it) send for a stored object."""
    headers = {
        "ETag": meta.etag,
        "Last-Modified": meta.http_last_modified,
        "Content-Type": meta.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in (
        ("Content-Encoding", meta.content_encoding),
        ("Content-Disposition", meta.content_disposition),
        ("Content-Language", meta.content_language),
        ("Cache-Control", meta.cache_control),
        ("Expires", meta.expires),
        ("x-amz-storage-class", meta.storage_class if meta.storage_class != "STANDARD" else None),
        ("x-amz-website-redirect-location", meta.website_redirect_location),
    ):
        if value is not None:
            headers[name] = value
    for name, value in meta.user_metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    return headers


class FileBody(Resource):
    """Streams an open object file (or one range of it) with Twisted's static producers."""

    isLeaf = True

    def __init__(self, file: IO[bytes], offset: int, length: int, size: int) -> None:
        super().__init__()
        self.file = file
        self.offset = offset
        self.length = length
        self.size = size

    def render(self, request: object) -> object:
        if self.offset == 0 and self.length == self.size:
            producer: object = NoRangeStaticProducer(request, self.file)
        else:
            producer = SingleRangeStaticProducer(request, self.file, self.offset, self.length)
        producer.start()  # type: ignore[attr-defined]
        return NOT_DONE_YET


async def get_object(svc: Services, call: S3Call) -> bytes | IResource:
    return _read_object(svc, call, with_body=True)


async def head_object(svc: Services, call: S3Call) -> bytes | IResource:
    return _read_object(svc, call, with_body=False)


def _read_object(svc: Services, call: S3Call, *, with_body: bool) -> bytes | IResource:
    key = call.key
    bucket = svc.bucket(call)
    opened = svc.storage.open(bucket, key) if with_body else None
    found: StoredObject | None = opened[1] if opened else svc.storage.find(bucket, key)
    if found is None:
        raise S3Error("NoSuchKey", extra={"Key": key})
    file = opened[0] if opened else None
    try:
        return _respond_with_object(svc, call, found, file)
    except BaseException:
        if file is not None:
            file.close()
        raise


def _respond_with_object(
    svc: Services, call: S3Call, found: StoredObject, file: IO[bytes] | None
) -> bytes | IResource:
    meta = found.meta
    if file is not None:
        check_readable(meta)
    headers = object_headers(meta)
    headers["x-amz-server-side-encryption"] = "AES256"  # S3 encrypts every object (SSE-S3)
    if meta.tagging:
        headers["x-amz-tagging-count"] = str(len(parse_qsl(meta.tagging, keep_blank_values=True)))
    part = call.query.get("partNumber")
    whole = "range" not in call.headers and (part is None or (meta.parts_count or 1) == 1)
    if whole and call.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        # S3 returns the object's checksum only when the whole object is sent (a part
        # of a multipart object has its own, which plantcdn does not keep).
        for algorithm, value in meta.checksums.items():
            headers[f"x-amz-checksum-{algorithm.lower()}"] = value
        if meta.checksum_type:
            headers["x-amz-checksum-type"] = meta.checksum_type
    verdict = evaluate_preconditions(call.headers, meta.etag, meta.last_modified, now=call.now)
    if verdict == NOT_MODIFIED:
        call.request.setResponseCode(304)
        for name in ("ETag", "Last-Modified", "Cache-Control", "Expires"):
            if name in headers:
                call.set_header(name, headers[name])
        if file is not None:
            file.close()
        return b""
    for param, header in RESPONSE_OVERRIDES.items():
        if param in call.query:
            headers[header] = call.query[param]
    offset, length = 0, meta.size
    if part is None:
        span = parse_range(call.headers.get("range"), meta.size)
        if span is not None:
            offset, length = span[0], span[1] - span[0] + 1
    else:
        if "range" in call.headers:
            raise S3Error(
                "InvalidRequest", "Cannot specify both Range header and partNumber query parameter"
            )
        offset, length = part_span(part, meta.size, meta.part_runs, meta.parts_count)
        span = (offset, offset + length - 1) if length else None  # an empty part: 200, no bytes
        if meta.parts_count:
            headers["x-amz-mp-parts-count"] = str(meta.parts_count)
    if span is not None:
        call.request.setResponseCode(206)
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{meta.size}"
    headers["Content-Length"] = str(length)
    for name, value in headers.items():
        call.set_header(name, value)
    if file is None:
        return b""
    if length == 0:
        file.close()
        return b""
    return FileBody(file, offset, length, meta.size)


HANDLERS: dict[str, Handler] = {
    "PutObject": put_object,
    "GetObject": get_object,
    "HeadObject": head_object,
}
