"""Multipart uploads: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads.

boto3's ``upload_file``/``upload_fileobj``, django-storages and ``aws s3 cp``
switch to these calls above 8 MB, so they must behave exactly as on S3 for the
same client code to run against both.  The on-disk state lives in
:mod:`plantcdn.uploads`; this module is the HTTP side: parse, check, stream,
render.

AWS pages followed (Amazon S3 API Reference): CreateMultipartUpload,
UploadPart, UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload,
ListParts, ListMultipartUploads; (S3 User Guide) "Uploading and copying
objects using multipart upload", "Amazon S3 multipart upload limits",
"Checking object integrity" (composite and full-object checksums of
multipart uploads), "Conditional writes".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from attrs import frozen
from awscrt import checksums as crt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger

from plantcdn.awschunked import AwsChunkedDecoder
from plantcdn.call import Handler, S3Call, Services
from plantcdn.copyobject import (
    SOURCE_NOT_READABLE,
    authorize_copy_source,
    check_copy_preconditions,
    parse_copy_source,
)
from plantcdn.digests import (
    ALGORITHMS,
    DigestResult,
    PayloadDigest,
    checksums_from_headers,
    requested_algorithm,
    trailer_algorithm,
)
from plantcdn.errors import S3Error, render_error_xml
from plantcdn.objects import (
    STREAMING_MODES,
    check_readable,
    check_write_conditions,
    check_write_headers,
    declared_length,
    payload_reader,
    set_stored_headers,
    stored_content_encoding,
)
from plantcdn.partnumber import part_runs
from plantcdn.s3shared import owner, send_xml
from plantcdn.storage import Bucket, ObjectMeta
from plantcdn.streaming import streamed_sink
from plantcdn.uploads import (
    MAX_PART_NUMBER,
    PartRecord,
    UploadState,
    UploadStore,
    new_upload_id,
)
from plantcdn.verification import user_metadata
from plantcdn.writer import (
    MAX_PUT_SIZE,
    UploadWriter,
    cooperate_cancellably,
    durably,
    pump_file,
)
from plantcdn.xmlbody import Node, iso_timestamp, local_name, parse_xml, render

__all__ = ["HANDLERS", "MIN_PART_SIZE"]

log = Logger()

#: "5 MiB to 5 GiB. There is no minimum size limit on the last part"
#: (S3 User Guide, "Amazon S3 multipart upload limits").
MIN_PART_SIZE = 5 * 1024**2
#: "Maximum object size: 48.8 TiB" (same page, since 2025; 5 TiB before).
MAX_OBJECT_SIZE = MAX_PART_NUMBER * MAX_PUT_SIZE
#: The CompleteMultipartUpload document is read whole (it is parsed as a tree);
#: 10,000 parts with ETags and SHA-256 checksums fit in well under this bound.
MAX_COMPLETE_BODY = 4 * 1024**2
#: Bytes moved per turn of the reactor while assembling the final object.
ASSEMBLE_STEP = 8 * 1024**2
#: Seconds of assembling after which (and between which) CompleteMultipartUpload
#: sends keep-alive white space, as S3 does (see :class:`KeepAlive`).
KEEPALIVE_EVERY = 5.0
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
#: "max-parts ... max-uploads ... default 1,000" (ListParts, ListMultipartUploads).
LIST_LIMIT = 1000

_CRC_COMBINE: Mapping[str, tuple[Callable[[int, int, int], int], int]] = {
    "CRC32": (crt.combine_crc32, 4),
    "CRC32C": (crt.combine_crc32c, 4),
    "CRC64NVME": (crt.combine_crc64nvme, 8),
}
_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_DIGITS = re.compile(r"[0-9]{1,10}")

#: Completions running in this process, by (bucket folder, upload id): a second
#: CompleteMultipartUpload of the same upload must not assemble it twice at once.
_completing: set[tuple[Path, str]] = set()


# -- small helpers ---------------------------------------------------------------


def _store(svc: Services) -> UploadStore:
    """Uploads are plain files with no state in memory, so a store is cheap to make."""
    return UploadStore(fsync=svc.storage.fsync, reaper=svc.storage.reaper)


def _upload_id(call: S3Call) -> str:
    return call.query.get("uploadId", "")


def _unquote_etag(etag: str) -> str:
    return etag.strip().strip('"')


def _xml_response(call: S3Call, root: str, nodes: Iterable[Node]) -> bytes:
    """One S3 XML document (the shapes of the API Reference, S3's namespace)."""
    return send_xml(call, render(root, list(nodes)))


def _people(svc: Services) -> list[Node]:
    """``Initiator`` and ``Owner``: the one canonical owner plantcdn reports everywhere."""
    return [("Initiator", owner(svc)), ("Owner", owner(svc))]


def _list_limit(call: S3Call, name: str) -> int:
    raw = call.query.get(name)
    if raw is None:
        return LIST_LIMIT
    if not _DIGITS.fullmatch(raw):
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return min(int(raw), LIST_LIMIT)


def _checksum_config(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The upload's checksum algorithm and type (COMPOSITE or FULL_OBJECT).

    S3 defaults the type to FULL_OBJECT for CRC64NVME and COMPOSITE otherwise;
    full-object checksums exist only for CRCs, composite ones not for CRC64NVME
    (User Guide, "Checking object integrity", "Using part-level checksums").
    """
    raw_algorithm = headers.get("x-amz-checksum-algorithm")
    raw_type = headers.get("x-amz-checksum-type")
    if raw_algorithm is None:
        if raw_type is not None:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header.",
            )
        return None, None
    algorithm = requested_algorithm(raw_algorithm)
    default = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    kind = (raw_type or default).strip().upper()
    if kind not in ("COMPOSITE", "FULL_OBJECT"):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if kind == "FULL_OBJECT" and algorithm not in _CRC_COMBINE:
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type cannot be used with the {algorithm.lower()} "
            "checksum algorithm.",
        )
    if kind == "COMPOSITE" and algorithm == "CRC64NVME":
        raise S3Error(
            "InvalidRequest",
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.",
        )
    return algorithm, kind


def _checksum_nodes(checksums: Mapping[str, str]) -> list[Node]:
    return [(f"Checksum{alg}", value) for alg, value in sorted(checksums.items())]


def _set_checksum_headers(call: S3Call, checksums: Mapping[str, str]) -> None:
    for algorithm, value in checksums.items():
        call.set_header(f"x-amz-checksum-{algorithm.lower()}", value)


# -- CreateMultipartUpload -----------------------------------------------------


async def create_multipart_upload(svc: Services, call: S3Call) -> bytes:
    """Record the upload and the headers its final object will carry."""
    key = call.key
    svc.verifier.check_write_key(key)
    bucket = svc.bucket(call)
    check_write_headers(call)
    algorithm, kind = _checksum_config(call.headers)
    h = call.headers
    object_fields: dict[str, Any] = {
        "content_type": h.get("content-type") or "binary/octet-stream",
        "content_encoding": stored_content_encoding(h.get("content-encoding")),
        "content_disposition": h.get("content-disposition"),
        "content_language": h.get("content-language"),
        "cache_control": h.get("cache-control"),
        "expires": h.get("expires"),
        "user_metadata": user_metadata(h),
        "acl": h.get("x-amz-acl"),
        "tagging": h.get("x-amz-tagging"),
        "storage_class": h.get("x-amz-storage-class"),
        "website_redirect_location": h.get("x-amz-website-redirect-location"),
    }
    assert call.auth is not None
    now = svc.clock.seconds()
    state = _store(svc).create(
        bucket,
        UploadState(
            upload_id=new_upload_id(),
            key=key,
            initiated=now,
            initiator=call.auth.access_key_id,
            checksum_algorithm=algorithm,
            checksum_type=kind,
            object_fields=object_fields,
        ),
    )
    if algorithm is not None and kind is not None:
        call.set_header("x-amz-checksum-algorithm", algorithm)
        call.set_header("x-amz-checksum-type", kind)
    call.set_header("x-amz-server-side-encryption", "AES256")
    return _xml_response(
        call,
        "InitiateMultipartUploadResult",
        [("Bucket", bucket.name), ("Key", key), ("UploadId", state.upload_id)],
    )


# -- UploadPart ----------------------------------------------------------------


class PartWriter(UploadWriter):
    """An :class:`UploadWriter` whose verified result becomes a part, not an object."""

    def seal(self) -> DigestResult:
        """Verify the complete body and close the temporary file; from here on the
        caller owns :attr:`temp` (it moves it into the upload, or removes it)."""
        result = super().seal()
        self.done = True
        return result


def _part_number(call: S3Call) -> int:
    """``partNumber``: "a positive integer between 1 and 10,000" (UploadPart)."""
    raw = call.query.get("partNumber", "")
    if _DIGITS.fullmatch(raw) and 1 <= int(raw) <= MAX_PART_NUMBER:
        return int(raw)
    raise S3Error(
        "InvalidArgument",
        f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
        extra={"ArgumentName": "partNumber", "ArgumentValue": raw},
    )


def _part_digest(
    call: S3Call, algorithm: str | None
) -> tuple[PayloadDigest, AwsChunkedDecoder | None]:
    """PutObject's digest for the part, also computing the upload's checksum algorithm.

    A part may carry only the upload's algorithm; S3 refuses any other
    ("Checksum Type mismatch occurred ...").  Without one, S3 computes it.
    """
    digest, decoder = payload_reader(call)
    if algorithm is None:
        return digest, decoder
    sent = set(checksums_from_headers(call.headers))
    trailer = trailer_algorithm(call.headers.get("x-amz-trailer"))
    if trailer is not None:
        sent.add(trailer)
    other = sorted(sent - {algorithm})
    if other:
        raise S3Error(
            "InvalidRequest",
            f"Checksum Type mismatch occurred, expected checksum Type: {algorithm.lower()}, "
            f"actual checksum Type: {other[0].lower()}",
        )
    if algorithm in sent:
        return digest, decoder
    assert call.auth is not None
    mode = call.auth.payload_hash
    sha256 = None if mode in STREAMING_MODES or mode == "UNSIGNED-PAYLOAD" else mode
    return (
        PayloadDigest(
            content_md5=call.headers.get("content-md5"),
            content_sha256=sha256,
            checksums=checksums_from_headers(call.headers),
            trailer_algorithm=trailer,
            compute=[algorithm],
        ),
        decoder,
    )


def _publish_part(
    svc: Services,
    bucket: Bucket,
    upload_id: str,
    number: int,
    writer: PartWriter,
    result: DigestResult,
) -> PartRecord:
    now = svc.clock.seconds()
    record = PartRecord(
        number=number,
        etag=f'"{result.md5_hex}"',
        size=result.size,
        last_modified=now,
        data="",
        checksums=dict(result.checksums),
    )
    try:
        _store(svc).store_part(bucket, upload_id, writer.temp, record)
    except OSError as exc:
        with contextlib.suppress(OSError):
            writer.temp.unlink()
        raise _disk_error(exc) from exc
    return record


def _seal_and_publish(
    svc: Services, bucket: Bucket, upload_id: str, number: int, writer: PartWriter
) -> Deferred[PartRecord]:
    """Verify the part's body and publish it into the upload.

    Sealing fsyncs the part and publishing its record fsyncs twice more: with
    fsync on, that waits for the disk on a thread, not in the reactor.
    """
    return durably(
        svc.clock, svc.storage.fsync,
        lambda: _publish_part(svc, bucket, upload_id, number, writer, writer.seal()),
    )


def prepare_part(svc: Services, call: S3Call) -> PartWriter:
    """Every check UploadPart makes before reading a byte of the body, then its writer."""
    _part_number(call)
    bucket = svc.bucket(call)
    state = _store(svc).load(bucket, _upload_id(call), call.key)
    declared_length(call)
    digest, decoder = _part_digest(call, state.checksum_algorithm)
    return PartWriter(svc.storage, bucket, call.key, digest=digest, decoder=decoder)


async def upload_part(svc: Services, call: S3Call) -> bytes:
    """One part (every PutObject payload mode), streamed into the upload as it arrived
    (see plantcdn.streaming), or from Twisted's spool."""
    writer: PartWriter | None = streamed_sink(call)
    if writer is None:
        writer = prepare_part(svc, call)
        await pump_file(call.request.content, writer, svc.cooperator)
    number = _part_number(call)
    bucket = svc.bucket(call)
    upload_id = _upload_id(call)
    record = await _seal_and_publish(svc, bucket, upload_id, number, writer)
    call.set_header("ETag", record.etag)
    _set_checksum_headers(call, record.checksums)
    call.set_header("x-amz-server-side-encryption", "AES256")
    call.set_header("Content-Length", "0")
    return b""


# -- UploadPartCopy ------------------------------------------------------------


def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    """Offset and length of ``x-amz-copy-source-range`` (strictly ``bytes=first-last``)."""
    if header is None:
        return 0, size
    match = _COPY_RANGE.fullmatch(header.strip())
    if match is None:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": header},
        )
    first, last = int(match[1]), int(match[2])
    if first > last or last >= size:
        raise S3Error(
            "InvalidArgument",
            f"Range specified is not valid for source object of size: {size}",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": header},
        )
    return first, last - first + 1


class _Slice:
    """``length`` bytes of an open file from its current position, as a readable source."""

    def __init__(self, file: IO[bytes], length: int) -> None:
        self.file = file
        self.remaining = length

    def read(self, size: int) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.file.read(min(size, self.remaining))
        self.remaining -= len(data)
        return data


async def upload_part_copy(svc: Services, call: S3Call) -> bytes:
    """Copy (a range of) a stored object into a part, streamed and hashed as it goes."""
    number = _part_number(call)
    key = call.key
    bucket = svc.bucket(call)
    upload_id = _upload_id(call)
    state = _store(svc).load(bucket, upload_id, key)
    source = parse_copy_source(call.headers["x-amz-copy-source"])
    authorize_copy_source(svc, call, source)
    opened = svc.storage.open(svc.storage.bucket(source.bucket), source.key)
    if opened is None:
        raise S3Error("NoSuchKey", extra={"Key": source.key})
    file, found = opened
    try:
        check_readable(found.meta, SOURCE_NOT_READABLE)
        check_copy_preconditions(call.headers, found.meta.etag, found.meta.last_modified)
        offset, length = _copy_range(call.headers.get("x-amz-copy-source-range"), found.meta.size)
        if length > MAX_PUT_SIZE:
            raise S3Error(
                "EntityTooLarge",
                extra={"ProposedSize": str(length), "MaxSizeAllowed": str(MAX_PUT_SIZE)},
            )
        algorithm = state.checksum_algorithm
        digest = PayloadDigest(compute=[algorithm] if algorithm else ())
        writer = PartWriter(svc.storage, bucket, key, digest=digest)
        file.seek(offset)
        piece = _Slice(file, length)
        await pump_file(piece, writer, svc.cooperator)  # type: ignore[arg-type]
        if piece.remaining:
            writer.abort()
            raise S3Error("InternalError")  # the source shrank under us: never a short part
    finally:
        file.close()
    record = await _seal_and_publish(svc, bucket, upload_id, number, writer)
    call.set_header("x-amz-server-side-encryption", "AES256")
    return _xml_response(
        call,
        "CopyPartResult",
        [
            ("LastModified", iso_timestamp(record.last_modified)),
            ("ETag", record.etag),
            *_checksum_nodes(record.checksums),
        ],
    )


# -- CompleteMultipartUpload ------------------------------------------------------


@frozen
class RequestedPart:
    """One ``<Part>`` of the CompleteMultipartUpload document."""

    number: int
    etag: str
    checksums: Mapping[str, str]


def _malformed() -> S3Error:
    return S3Error("MalformedXML")


def _read_body(call: S3Call) -> bytes:
    """The (small) request body, bounded, with its signed SHA-256 or Content-MD5 verified."""
    raw = call.request.content.read(MAX_COMPLETE_BODY + 1)
    assert call.auth is not None
    mode = call.auth.payload_hash
    body = raw
    trailers: object = {}
    if mode in STREAMING_MODES:
        decoded = call.headers.get("x-amz-decoded-content-length")
        trailer = call.headers.get("x-amz-trailer")
        decoder = AwsChunkedDecoder(
            mode=mode,
            auth=call.auth,
            declared_trailers=[trailer.strip().lower()] if trailer else [],
            # isascii: a latin-1 header may hold "²", which isdigit() but int() refuses
            decoded_length=(
                int(decoded) if decoded and decoded.isascii() and decoded.isdigit() else None
            ),
        )
        body = decoder.feed(raw)
        trailers = decoder.finish()
    if len(body) > MAX_COMPLETE_BODY:
        raise S3Error("MaxMessageLengthExceeded")
    sha256 = None if mode in STREAMING_MODES or mode == "UNSIGNED-PAYLOAD" else mode
    digest = PayloadDigest(content_md5=call.headers.get("content-md5"), content_sha256=sha256)
    digest.update(body)
    digest.finish(trailers if isinstance(trailers, dict) else {})
    return body


def parse_complete_document(body: bytes) -> list[RequestedPart]:
    """The parts of a ``<CompleteMultipartUpload>`` document, as sent (order kept).

    Parsed with :func:`plantcdn.xmlbody.parse_xml` (defusedxml: no DTDs, entities
    or external references).
    """
    root = parse_xml(body, MAX_COMPLETE_BODY)
    if local_name(root) != "CompleteMultipartUpload":
        raise _malformed()
    parts: list[RequestedPart] = []
    for element in root:
        if local_name(element) != "Part":
            raise _malformed()
        fields = {local_name(sub) or "": (sub.text or "").strip() for sub in element}
        number_text = fields.get("PartNumber", "")
        if not _DIGITS.fullmatch(number_text) or "ETag" not in fields:
            raise _malformed()
        checksums = {
            name[len("Checksum") :].upper(): value
            for name, value in fields.items()
            if name.startswith("Checksum") and name[len("Checksum") :].upper() in ALGORITHMS
        }
        parts.append(RequestedPart(int(number_text), fields["ETag"], checksums))
    if not parts:
        raise _malformed()
    return parts


def _invalid_part(upload_id: str, part: RequestedPart) -> S3Error:
    return S3Error(
        "InvalidPart",
        extra={"UploadId": upload_id, "PartNumber": str(part.number), "ETag": part.etag},
    )


def _match_parts(
    store: UploadStore,
    bucket: Bucket,
    state: UploadState,
    requested: list[RequestedPart],
) -> list[PartRecord]:
    """The stored parts the document names, in S3's order of checks:
    order (InvalidPartOrder), existence and ETag (InvalidPart), size (EntityTooSmall)."""
    for previous, current in zip(requested, requested[1:], strict=False):
        if current.number <= previous.number:
            raise S3Error("InvalidPartOrder", extra={"UploadId": state.upload_id})
    algorithm = state.checksum_algorithm
    records: list[PartRecord] = []
    for part in requested:
        record = store.part(bucket, state.upload_id, part.number)
        if record is None or _unquote_etag(record.etag) != _unquote_etag(part.etag):
            raise _invalid_part(state.upload_id, part)
        for given_algorithm, value in part.checksums.items():
            if record.checksums.get(given_algorithm) != value:
                raise _invalid_part(state.upload_id, part)
        if algorithm and state.checksum_type == "COMPOSITE" and algorithm not in part.checksums:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using a {algorithm.lower()} checksum. The complete "
                "request must include the checksum for each part. It was missing for part "
                f"{part.number} in the request.",
            )
        records.append(record)
    for part, record in zip(requested[:-1], records[:-1], strict=True):
        if record.size < MIN_PART_SIZE:
            raise S3Error(
                "EntityTooSmall",
                extra={
                    "ProposedSize": str(record.size),
                    "MinSizeAllowed": str(MIN_PART_SIZE),
                    "PartNumber": str(part.number),
                    "ETag": _unquote_etag(record.etag),
                },
            )
    total = sum(r.size for r in records)
    if total > MAX_OBJECT_SIZE:
        raise S3Error(
            "EntityTooLarge",
            extra={"ProposedSize": str(total), "MaxSizeAllowed": str(MAX_OBJECT_SIZE)},
        )
    return records


def multipart_etag(records: Iterable[PartRecord]) -> str:
    """S3's ETag of a multipart object: md5 of the parts' binary md5s, then ``-<count>``."""
    md5s = [bytes.fromhex(_unquote_etag(r.etag)) for r in records]
    return f'"{hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest()}-{len(md5s)}"'


def final_checksum(
    state: UploadState, records: list[PartRecord], headers: Mapping[str, str]
) -> tuple[dict[str, str], str | None]:
    """The object's checksum and its type, as S3 derives them from the parts.

    COMPOSITE: the algorithm over the concatenated binary part checksums, then
    ``-<count>``.  FULL_OBJECT: the CRC of the whole object, combined from the
    part CRCs without reading the bytes again; a value the client sends on
    CompleteMultipartUpload must match it.
    """
    algorithm, kind = state.checksum_algorithm, state.checksum_type
    sent_kind = headers.get("x-amz-checksum-type")
    if sent_kind is not None and kind is not None and sent_kind.strip().upper() != kind:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {kind} checksum mode. The complete request "
            "must use the same checksum mode.",
        )
    if algorithm is None:
        return {}, None
    try:
        raw = [base64.b64decode(r.checksums[algorithm]) for r in records]
    except (KeyError, binascii.Error):
        raise S3Error("InternalError") from None
    if kind == "FULL_OBJECT":
        combine, width = _CRC_COMBINE[algorithm]
        crc = int.from_bytes(raw[0], "big")
        for value, record in zip(raw[1:], records[1:], strict=True):
            crc = combine(crc, int.from_bytes(value, "big"), record.size)
        checksum = base64.b64encode(crc.to_bytes(width, "big")).decode("ascii")
        sent = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if sent is not None and sent.strip() != checksum:
            raise S3Error(
                "BadDigest",
                f"The {algorithm} you specified did not match the calculated checksum.",
            )
        return {algorithm: checksum}, "FULL_OBJECT"
    digest = PayloadDigest(compute=[algorithm])
    digest.update(b"".join(raw))
    composite = digest.finish().checksums[algorithm]
    return {algorithm: f"{composite}-{len(records)}"}, "COMPOSITE"


def _check_object_size(headers: Mapping[str, str], records: list[PartRecord]) -> None:
    """``x-amz-mp-object-size``, when sent, must be the object's size."""
    sent = headers.get("x-amz-mp-object-size")
    total = sum(r.size for r in records)
    if sent is not None and sent.strip() != str(total):
        raise S3Error(
            "InvalidRequest",
            f"The provided 'x-amz-mp-object-size' header value {sent.strip()} does not match "
            f"what was computed: {total}",
        )


def _copy_chunk(source: int, target: int, size: int) -> int:
    """Move up to *size* bytes between the files' current offsets, in the kernel if it can."""
    try:
        return os.copy_file_range(source, target, size)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    data = os.read(source, min(size, 1024 * 1024))
    view = memoryview(data)
    while view:
        view = view[os.write(target, view) :]
    return len(data)


def _fsync_duplicate(fd: int) -> None:
    """fsync a descriptor this call owns, then close it."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def assemble(
    cooperator: Cooperator,
    sources: list[tuple[Path, int]],
    target_fd: int,
    *,
    step: int = ASSEMBLE_STEP,
) -> Deferred[None]:
    """Concatenate the part files (path, expected size) into *target_fd*, one bounded
    step per turn of the reactor; memory does not grow with the object.

    A part file that is missing or not of its recorded size (replaced by a
    concurrent UploadPart of the same number) fails with ``InvalidPart``.
    Cancelling stops the copy; the caller removes the target.
    """

    def steps() -> Generator[None, None, None]:
        for path, size in sources:
            try:
                source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                raise S3Error("InvalidPart") from None
            try:
                if os.fstat(source).st_size != size:
                    raise S3Error("InvalidPart")
                remaining = size
                while remaining:
                    moved = _copy_chunk(source, target_fd, min(step, remaining))
                    if moved == 0:
                        raise S3Error("InvalidPart")
                    remaining -= moved
                    yield None
            finally:
                os.close(source)

    iterator = steps()
    return cooperate_cancellably(cooperator, iterator, on_stop=iterator.close)


class KeepAlive:
    """S3's answer to a CompleteMultipartUpload that takes long to assemble.

    "After Amazon S3 begins processing the request, it sends an HTTP response
    header that specifies a 200 OK response. While processing is in progress,
    Amazon S3 periodically sends white space characters to keep the connection
    from timing out.  Because a request could fail after the initial 200 OK
    response has been sent, it is important that you check the response body"
    (API Reference, CompleteMultipartUpload).  SDKs do, so a very large object
    never hits the client's read timeout (60 s in botocore).  Every refusal
    that can be decided up front (InvalidPart, EntityTooSmall ...) is sent
    before this starts, with its own status.
    """

    def __init__(self, call: S3Call, clock: IReactorTime, every: float | None = None) -> None:
        self.call = call
        self.clock = clock
        self.every = KEEPALIVE_EVERY if every is None else every
        self.started = False
        self._timer: IDelayedCall | None = clock.callLater(self.every, self._tick)

    def _tick(self) -> None:
        request = self.call.request
        try:
            if not self.started:
                self.started = True
                request.setResponseCode(200)
                self.call.set_header("Content-Type", "application/xml")
                self.call.set_header("x-amz-server-side-encryption", "AES256")
                request.write(XML_DECLARATION)
            request.write(b" ")
        except Exception:  # the client went away; the handler is being cancelled
            self._timer = None
            return
        self._timer = self.clock.callLater(self.every, self._tick)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def finish(self, document: bytes) -> bytes:
        """What is left to send of *document* (its declaration went first)."""
        self.stop()
        return document.removeprefix(XML_DECLARATION) if self.started else document

    def finish_with_error(self, error: S3Error) -> bytes:
        """An ``<Error>`` document in the 200 answer already under way."""
        host_id = self.call.request.responseHeaders.getRawHeaders(b"x-amz-id-2", [b""])[0]
        body = render_error_xml(
            error,
            request_id=self.call.request_id,
            host_id=host_id.decode("latin-1"),
            resource=self.call.target.resource,
        )
        return self.finish(body)


def _location(svc: Services, call: S3Call, bucket: str, key: str) -> str:
    """The object's URL in the addressing style the client used."""
    base = svc.config.base_url.rstrip("/")
    path = quote(key, safe="/~")
    if call.target.virtual_hosted:
        parts = urlsplit(base)
        return f"{parts.scheme}://{bucket}.{parts.netloc}/{path}"
    return f"{base}/{bucket}/{path}"


async def complete_multipart_upload(svc: Services, call: S3Call) -> bytes:
    """Check the part list, stream the parts into one file, publish it atomically."""
    key = call.key
    bucket = svc.bucket(call)
    store = _store(svc)
    upload_id = _upload_id(call)
    state = store.load(bucket, upload_id, key)
    requested = parse_complete_document(_read_body(call))
    flight = (bucket.root, upload_id)
    if flight in _completing:
        raise S3Error("OperationAborted")
    _completing.add(flight)
    try:
        return await _complete(svc, call, store, bucket, state, requested)
    finally:
        _completing.discard(flight)


async def _complete(
    svc: Services,
    call: S3Call,
    store: UploadStore,
    bucket: Bucket,
    state: UploadState,
    requested: list[RequestedPart],
) -> bytes:
    key = state.key
    records = _match_parts(store, bucket, state, requested)
    _check_object_size(call.headers, records)
    checksums, checksum_type = final_checksum(state, records, call.headers)
    etag = multipart_etag(records)
    check_write_conditions(svc, call, bucket, key)
    sources = [(store.part_path(bucket, state.upload_id, r), r.size) for r in records]
    fd, temp = svc.storage.new_temp(bucket)
    keepalive = KeepAlive(call, svc.clock)
    try:
        try:
            await assemble(svc.cooperator, sources, fd)
            if svc.storage.fsync:
                # Seconds for a large object: on a thread, with its own descriptor
                # (this one is closed below even if the client goes away meanwhile).
                await durably(svc.clock, True, _fsync_duplicate, os.dup(fd))
        finally:
            os.close(fd)
        check_write_conditions(svc, call, bucket, key)
        now = svc.clock.seconds()
        meta = svc.storage.commit(
            bucket,
            key,
            temp,
            ObjectMeta(
                etag=etag,
                size=sum(r.size for r in records),
                last_modified=now,
                checksums=checksums,
                checksum_type=checksum_type,
                parts_count=len(records),
                part_runs=part_runs(r.size for r in records),
                **state.object_fields,
            ),
            exclusive="if-none-match" in call.headers,
        )
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        error = _disk_error(exc) if isinstance(exc, OSError) else exc
        if keepalive.started and isinstance(error, S3Error):
            return keepalive.finish_with_error(error)
        if error is not exc:
            raise error from exc
        raise
    finally:
        keepalive.stop()
    with contextlib.suppress(S3Error):
        store.remove(bucket, state.upload_id)
    await _sync_removal(svc, store, bucket)
    document = render(
        "CompleteMultipartUploadResult",
        [
            ("Location", _location(svc, call, bucket.name, key)),
            ("Bucket", bucket.name),
            ("Key", key),
            ("ETag", meta.etag),
            *_checksum_nodes(meta.checksums),
            *([("ChecksumType", meta.checksum_type)] if meta.checksum_type else []),
        ],
    )
    if keepalive.started:
        return keepalive.finish(document)
    set_stored_headers(call, meta)
    return send_xml(call, document)


# -- AbortMultipartUpload, ListParts, ListMultipartUploads -----------------------------


async def abort_multipart_upload(svc: Services, call: S3Call) -> bytes:
    """Remove the upload and every part: 204, or 404 ``NoSuchUpload``."""
    bucket = svc.bucket(call)
    store = _store(svc)
    upload_id = _upload_id(call)
    store.load(bucket, upload_id, call.key)
    store.remove(bucket, upload_id)
    await _sync_removal(svc, store, bucket)
    call.request.setResponseCode(204)
    return b""


async def _sync_removal(svc: Services, store: UploadStore, bucket: Bucket) -> None:
    """A finished upload's removal made durable (fsync on), on the thread pool.  The
    upload is gone either way: a failed sync is logged, not turned into an error."""
    if not store.fsync:
        return
    try:
        await durably(svc.clock, True, store.sync_removal, bucket)
    except OSError as exc:
        log.error("could not sync the removal of an upload: {error}", error=str(exc))


async def list_parts(svc: Services, call: S3Call) -> bytes:
    """The parts uploaded so far, by part number, ``max-parts`` at a time."""
    bucket = svc.bucket(call)
    store = _store(svc)
    upload_id = _upload_id(call)
    state = store.load(bucket, upload_id, call.key)
    limit = _list_limit(call, "max-parts")
    marker_text = call.query.get("part-number-marker", "0") or "0"
    if not _DIGITS.fullmatch(marker_text):
        raise S3Error(
            "InvalidArgument",
            "Provided part-number-marker not an integer or within integer range",
            extra={"ArgumentName": "part-number-marker", "ArgumentValue": marker_text},
        )
    marker = int(marker_text)
    after = [r for r in store.parts(bucket, upload_id) if r.number > marker]
    page, truncated = after[:limit], len(after) > limit
    elements: list[Node] = [
        ("Bucket", bucket.name),
        ("Key", state.key),
        ("UploadId", upload_id),
        *_people(svc),
        ("StorageClass", state.object_fields.get("storage_class") or "STANDARD"),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].number if page else marker),
        ("MaxParts", limit),
        ("IsTruncated", truncated),
    ]
    for record in page:
        part: list[Node] = [
            ("PartNumber", record.number),
            ("LastModified", iso_timestamp(record.last_modified)),
            ("ETag", record.etag),
            ("Size", record.size),
            *_checksum_nodes(record.checksums),
        ]
        elements.append(("Part", part))
    if state.checksum_algorithm:
        elements.append(("ChecksumAlgorithm", state.checksum_algorithm))
    if state.checksum_type:
        elements.append(("ChecksumType", state.checksum_type))
    return _xml_response(call, "ListPartsResult", elements)


def _after_marker(
    uploads: list[UploadState], key_marker: str, upload_id_marker: str
) -> list[UploadState]:
    """Uploads after (key-marker, upload-id-marker) in S3's order: key, then initiation."""
    if not key_marker:
        return uploads
    if upload_id_marker:
        for index, upload in enumerate(uploads):
            if upload.key == key_marker and upload.upload_id == upload_id_marker:
                return uploads[index + 1 :]
    return [u for u in uploads if u.key > key_marker]


def _upload_node(svc: Services, upload: UploadState, enc: Callable[[str], str]) -> Node:
    """One ``<Upload>`` of ListMultipartUploadsResult."""
    inner: list[Node] = [
        ("Key", enc(upload.key)),
        ("UploadId", upload.upload_id),
        *_people(svc),
        ("StorageClass", upload.object_fields.get("storage_class") or "STANDARD"),
        ("Initiated", iso_timestamp(upload.initiated)),
    ]
    if upload.checksum_algorithm:
        inner.append(("ChecksumAlgorithm", upload.checksum_algorithm))
    if upload.checksum_type:
        inner.append(("ChecksumType", upload.checksum_type))
    return ("Upload", inner)


async def list_multipart_uploads(svc: Services, call: S3Call) -> bytes:
    """Uploads in progress (also those a restart left behind), by key, then initiation."""
    bucket = svc.bucket(call)
    q = call.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    key_marker = q.get("key-marker", "")
    upload_id_marker = q.get("upload-id-marker", "") if key_marker else ""
    encoding = q.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding},
        )
    limit = _list_limit(call, "max-uploads")

    def enc(value: str) -> str:
        return quote(value, safe="/") if encoding == "url" else value

    uploads = sorted(
        (u for u in _store(svc).iter_uploads(bucket) if u.key.startswith(prefix)),
        key=lambda u: (u.key.encode("utf-8"), u.initiated, u.upload_id),
    )
    uploads = _after_marker(uploads, key_marker, upload_id_marker)
    entries: list[UploadState | str] = []  # an upload, or a common prefix
    seen_prefixes: set[str] = set()
    truncated = False
    for upload in uploads:
        common = None
        if delimiter:
            rest = upload.key[len(prefix) :]
            if delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
        if common is not None and (common in seen_prefixes or common == key_marker):
            continue
        if len(entries) >= limit:
            truncated = True
            break
        if common is not None:
            seen_prefixes.add(common)
            entries.append(common)
        else:
            entries.append(upload)
    elements: list[Node] = [
        ("Bucket", bucket.name),
        ("KeyMarker", enc(key_marker)),
        ("UploadIdMarker", upload_id_marker),
    ]
    if truncated and entries:
        last = entries[-1]
        next_key = last if isinstance(last, str) else last.key
        next_id = "" if isinstance(last, str) else last.upload_id
        elements += [("NextKeyMarker", enc(next_key)), ("NextUploadIdMarker", next_id)]
    if delimiter:
        elements.append(("Delimiter", enc(delimiter)))
    elements += [
        ("Prefix", enc(prefix)),
        ("MaxUploads", limit),
        ("IsTruncated", truncated),
    ]
    for entry in entries:
        if not isinstance(entry, str):
            elements.append(_upload_node(svc, entry, enc))
    for entry in entries:
        if isinstance(entry, str):
            elements.append(("CommonPrefixes", [("Prefix", enc(entry))]))
    if encoding == "url":
        elements.append(("EncodingType", "url"))
    return _xml_response(call, "ListMultipartUploadsResult", elements)


def _disk_error(exc: OSError) -> S3Error:
    """Disk trouble is the server's fault: a 5xx the client may retry, never a traceback."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return S3Error("SlowDown", "Please reduce your request rate. (storage is full)")
    return S3Error("InternalError")


HANDLERS: dict[str, Handler] = {
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
