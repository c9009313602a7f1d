"""CopyObject: one object copied, within a bucket or across the two buckets.

Follows the API Reference page "CopyObject".  The copy streams from the open
source file through the same :class:`~plantcdn.writer.UploadWriter` as an
upload (a temporary file in the *destination* bucket, hashed as it goes,
renamed into place), one step per reactor turn, so memory stays flat and a
half-done copy is never visible.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from urllib.parse import unquote

from attrs import evolve, frozen

from plantcdn.call import Handler, S3Call, Services
from plantcdn.conditions import etag_matches
from plantcdn.digests import DigestResult, PayloadDigest, requested_algorithm
from plantcdn.errors import S3Error
from plantcdn.objects import (
    check_readable,
    check_write_conditions,
    check_write_headers,
    describe_upload,
    publish,
)
from plantcdn.s3shared import bucket_of, key_of, send_xml
from plantcdn.storage import ObjectMeta
from plantcdn.verification import user_metadata
from plantcdn.writer import MAX_PUT_SIZE, UploadWriter, pump_file
from plantcdn.xmlbody import Node, iso_timestamp, render

__all__ = ["HANDLERS", "CopySource", "authorize_copy_source", "parse_copy_source"]

_TO_ITSELF = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes."
)
#: S3's message when a copy's source must be restored first.
SOURCE_NOT_READABLE = "Operation is not valid for the source object's storage class"
_BAD_SOURCE = "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"


@frozen
class CopySource:
    bucket: str
    key: str


def parse_copy_source(header: str) -> CopySource:
    """``x-amz-copy-source``: ``[/]bucket/key[?versionId=...]``, the key URL-encoded.

    Only the ``null`` version exists in an unversioned bucket; any other
    version id is refused as S3 refuses an id it cannot find.
    """
    path, _, query = header.partition("?")
    if query:
        name, _, value = query.partition("=")
        if name != "versionId":
            raise S3Error("InvalidArgument", _BAD_SOURCE, extra=_arg(header))
        if unquote(value) != "null":
            raise S3Error(
                "InvalidArgument",
                "Invalid version id specified",
                extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": header},
            )
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", _BAD_SOURCE, extra=_arg(header)) from None
    bucket, _, key = decoded.removeprefix("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", _BAD_SOURCE, extra=_arg(header))
    return CopySource(bucket, key)


def authorize_copy_source(svc: Services, call: S3Call, source: CopySource) -> None:
    """Scoped credentials: a copy reads its source, so the signer needs ``read`` there too
    (checked before the source is opened: a refusal must not tell whether it exists)."""
    signer = call.auth.access_key_id if call.auth is not None else None
    svc.verifier.authorize(signer, "CopySource", source.bucket, source.key)


def _arg(value: str) -> dict[str, str]:
    return {"ArgumentName": "x-amz-copy-source", "ArgumentValue": value}


def _http_date(value: str | None) -> float | None:
    """An HTTP date as seconds, or None when absent or unreadable (S3 ignores those)."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def check_copy_preconditions(headers: Mapping[str, str], etag: str, last_modified: float) -> None:
    """The ``x-amz-copy-source-if-*`` headers; any that fails is 412.

    CopyObject: when ``if-match`` holds, a failing ``if-unmodified-since`` is
    ignored; when ``if-none-match`` fails, ``if-modified-since`` does not
    rescue it.  HTTP dates have one-second resolution; bad dates are ignored.
    """
    modified = int(last_modified)
    prefix = "x-amz-copy-source-"
    if_match = headers.get(prefix + "if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise _failed("If-Match")
    else:
        since = _http_date(headers.get(prefix + "if-unmodified-since"))
        if since is not None and modified > since:
            raise _failed("If-Unmodified-Since")
    if_none_match = headers.get(prefix + "if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            raise _failed("If-None-Match")
    else:
        since = _http_date(headers.get(prefix + "if-modified-since"))
        if since is not None and modified <= since:
            raise _failed("If-Modified-Since")


def _failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", extra={"Condition": f"x-amz-copy-source-{condition}"})


def _directive(call: S3Call, name: str) -> str:
    value = call.headers.get(name, "COPY").strip().upper()
    if value not in ("COPY", "REPLACE"):
        label = "metadata" if "metadata" in name else "tagging"
        raise S3Error(
            "InvalidArgument",
            f"Unknown {label} directive.",
            extra={"ArgumentName": name, "ArgumentValue": call.headers[name]},
        )
    return value


async def copy_object(svc: Services, call: S3Call) -> bytes:
    dest_key = key_of(call)
    svc.verifier.check_write_key(dest_key)
    dest_bucket = bucket_of(svc, call)
    check_write_headers(call)
    source = parse_copy_source(call.headers["x-amz-copy-source"])
    authorize_copy_source(svc, call, source)
    source_bucket = svc.storage.bucket(source.bucket)
    check_write_conditions(svc, call, dest_bucket, dest_key)  # before the copy's work
    metadata_directive = _directive(call, "x-amz-metadata-directive")
    tagging_directive = _directive(call, "x-amz-tagging-directive")
    user_meta = user_metadata(call.headers) if metadata_directive == "REPLACE" else None
    raw_algorithm = call.headers.get("x-amz-checksum-algorithm")
    algorithm = requested_algorithm(raw_algorithm) if raw_algorithm is not None else None

    opened = svc.storage.open(source_bucket, source.key)
    if opened is None:
        raise S3Error("NoSuchKey", extra={"Key": source.key})
    file, found = opened
    try:
        meta = found.meta
        check_readable(meta, SOURCE_NOT_READABLE)
        check_copy_preconditions(call.headers, meta.etag, meta.last_modified)
        same_object = source_bucket == dest_bucket and source.key == dest_key
        changes = (
            metadata_directive == "REPLACE"
            or "x-amz-storage-class" in call.headers
            or "x-amz-website-redirect-location" in call.headers
            or "x-amz-server-side-encryption" in call.headers
            or algorithm is not None
        )
        if same_object and not changes:
            raise S3Error("InvalidRequest", _TO_ITSELF)
        if meta.size > MAX_PUT_SIZE:
            raise S3Error(
                "InvalidRequest",
                "The specified copy source is larger than the maximum allowable size for a "
                f"copy source: {MAX_PUT_SIZE}",
            )
        algorithms = {algorithm} if algorithm else set(meta.checksums)
        writer = UploadWriter(
            svc.storage, dest_bucket, dest_key, digest=PayloadDigest(compute=sorted(algorithms))
        )
        await pump_file(file, writer, svc.cooperator)
    finally:
        file.close()

    now = svc.clock.seconds()

    def describe(result: DigestResult) -> ObjectMeta:
        if result.size != meta.size:
            raise S3Error("InternalError")  # the source changed under us: never publish half
        if metadata_directive == "REPLACE":
            assert user_meta is not None
            copied = describe_upload(call, result, user_meta=user_meta, now=now)
        else:
            copied = evolve(
                meta,
                etag=f'"{result.md5_hex}"',
                last_modified=now,
                checksums=dict(result.checksums),
                checksum_type="FULL_OBJECT" if result.checksums else None,
                acl=call.headers.get("x-amz-acl"),
                storage_class=call.headers.get("x-amz-storage-class"),
                parts_count=None,
                part_runs=None,
                # Never copied with the metadata: S3 takes it from the request alone.
                website_redirect_location=call.headers.get("x-amz-website-redirect-location"),
            )
        tagging = (
            call.headers.get("x-amz-tagging") if tagging_directive == "REPLACE" else meta.tagging
        )
        return evolve(copied, tagging=tagging)

    stored = await publish(svc, call, writer, describe)
    result: list[Node] = [
        ("ETag", stored.etag),
        ("LastModified", iso_timestamp(stored.last_modified)),
    ]
    for algorithm, value in stored.checksums.items():
        result.append((f"Checksum{algorithm}", value))
    if stored.checksum_type:
        result.append(("ChecksumType", stored.checksum_type))
    call.set_header("x-amz-server-side-encryption", "AES256")
    return send_xml(call, render("CopyObjectResult", result))


HANDLERS: dict[str, Handler] = {"CopyObject": copy_object}
