"""Bucket-level S3 operations, and the registry of this family of handlers.

ListObjectsV2, ListObjects, ListBuckets, HeadBucket, GetBucketLocation,
GetBucketVersioning, CreateBucket and DeleteBucket live here; DeleteObject(s),
CopyObject and the tagging/ACL calls live in their own modules and are
registered through :data:`HANDLERS` too.  Pagination itself is pure
(:mod:`plantcdn.listing`); this module only reads the query, walks the folder
and renders S3's XML.

plantcdn's buckets are the configured folders: they exist from the start and
cannot be created or deleted by a client (README, "Deliberate differences").
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from urllib.parse import quote

from plantcdn import copyobject, deletes, subresources
from plantcdn.call import Handler, S3Call, Services
from plantcdn.errors import S3Error
from plantcdn.listing import Page, decode_token, encode_token, paginate, parse_max_keys, walk_keys
from plantcdn.s3shared import bucket_of, owner, send_xml
from plantcdn.storage import Bucket
from plantcdn.xmlbody import Node, iso_timestamp, local_name, parse_xml, render

__all__ = ["HANDLERS"]

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CREATED_MARK = "created"


# -- listing ------------------------------------------------------------------


def _encoder(call: S3Call) -> str | None:
    """``encoding-type``: only ``url`` exists (ListObjectsV2, "EncodingType")."""
    encoding = call.query.get("encoding-type")
    if encoding is None:
        return None
    if encoding != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding},
        )
    return encoding


def _encode(value: str, encoding: str | None) -> str:
    """Keys and prefixes URL-encoded when asked (botocore decodes them with unquote_plus)."""
    return quote(value, safe="/") if encoding == "url" else value


def _page(svc: Services, bucket: Bucket, call: S3Call, after: str | None) -> Page:
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    max_keys = parse_max_keys(call.query.get("max-keys"))
    keys, walker = walk_keys(bucket.root, prefix, after)
    return paginate(
        keys, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys, walker=walker
    )


def _contents(
    svc: Services, bucket: Bucket, page: Page, encoding: str | None, with_owner: bool
) -> Iterable[Node]:
    """``Contents`` for each key (skipping one removed since the walk) then ``CommonPrefixes``."""
    me = owner(svc) if with_owner else None
    for entry in page.entries:
        if entry.is_prefix:
            continue
        found = svc.storage.find(bucket, entry.name)
        if found is None:
            continue
        meta = found.meta
        item: list[Node] = [
            ("Key", _encode(entry.name, encoding)),
            ("LastModified", iso_timestamp(meta.last_modified)),
            ("ETag", meta.etag),
        ]
        item += [("ChecksumAlgorithm", algorithm) for algorithm in meta.checksums]
        if meta.checksum_type:
            item.append(("ChecksumType", meta.checksum_type))
        item.append(("Size", meta.size))
        if me is not None:
            item.append(("Owner", me))
        item.append(("StorageClass", meta.storage_class or "STANDARD"))
        yield ("Contents", item)
    for name in page.common_prefixes:
        yield ("CommonPrefixes", [("Prefix", _encode(name, encoding))])


def _next_token(page: Page) -> str | None:
    return encode_token(page.last) if page.is_truncated and page.last is not None else None


async def list_objects_v2(svc: Services, call: S3Call) -> bytes:
    """API Reference, ListObjectsV2: continuation tokens, ``start-after``, ``fetch-owner``."""
    bucket = bucket_of(svc, call)
    if call.query.get("list-type") != "2":
        raise S3Error(
            "InvalidArgument",
            "Invalid List Type specified in Request",
            extra={"ArgumentName": "list-type", "ArgumentValue": call.query.get("list-type", "")},
        )
    encoding = _encoder(call)
    token = call.query.get("continuation-token")
    start_after = call.query.get("start-after")
    after = decode_token(token) if token is not None else start_after or None
    page = _page(svc, bucket, call, after)
    fetch_owner = call.query.get("fetch-owner", "false").lower() == "true"
    contents = list(_contents(svc, bucket, page, encoding, fetch_owner))
    delimiter = call.query.get("delimiter")
    body: list[Node] = [
        ("Name", bucket.name),
        ("Prefix", _encode(call.query.get("prefix", ""), encoding)),
        ("ContinuationToken", token),
        ("NextContinuationToken", _next_token(page)),
        ("StartAfter", _encode(start_after, encoding) if start_after is not None else None),
        ("KeyCount", len(contents)),
        ("MaxKeys", parse_max_keys(call.query.get("max-keys"))),
        ("Delimiter", _encode(delimiter, encoding) if delimiter else None),
        ("EncodingType", encoding),
        ("IsTruncated", page.is_truncated),
        *contents,
    ]
    return send_xml(call, render("ListBucketResult", body))


async def list_objects(svc: Services, call: S3Call) -> bytes:
    """API Reference, ListObjects (v1): ``marker``; ``NextMarker`` only with a delimiter."""
    bucket = bucket_of(svc, call)
    encoding = _encoder(call)
    marker = call.query.get("marker", "")
    page = _page(svc, bucket, call, marker or None)
    delimiter = call.query.get("delimiter")
    next_marker = page.last if page.is_truncated and delimiter else None
    body: list[Node] = [
        ("Name", bucket.name),
        ("Prefix", _encode(call.query.get("prefix", ""), encoding)),
        ("Marker", _encode(marker, encoding)),
        ("NextMarker", _encode(next_marker, encoding) if next_marker else None),
        ("MaxKeys", parse_max_keys(call.query.get("max-keys"))),
        ("Delimiter", _encode(delimiter, encoding) if delimiter else None),
        ("EncodingType", encoding),
        ("IsTruncated", page.is_truncated),
        *_contents(svc, bucket, page, encoding, with_owner=True),
    ]
    return send_xml(call, render("ListBucketResult", body))


# -- buckets ------------------------------------------------------------------


def _creation_date(bucket: Bucket, now: float) -> float:
    """A stable CreationDate: the time plantcdn first reported the bucket.

    Folder times change whenever a key is added, so a marker file under
    ``.plantcdn`` is created once (O_EXCL) and its modification time used.
    """
    mark = bucket.internal / _CREATED_MARK
    with contextlib.suppress(FileExistsError, OSError):
        mark.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    try:
        return os.stat(mark).st_mtime
    except OSError:
        return now


async def list_buckets(svc: Services, call: S3Call) -> bytes:
    """API Reference, ListBuckets: both configured buckets (``prefix`` filters them)."""
    prefix = call.query.get("prefix", "")
    buckets: list[Node] = []
    for name in sorted(svc.storage.buckets):
        if not name.startswith(prefix):
            continue
        bucket = svc.storage.buckets[name]
        buckets.append(
            (
                "Bucket",
                [
                    ("Name", name),
                    ("CreationDate", iso_timestamp(_creation_date(bucket, call.now))),
                    ("BucketRegion", svc.config.region),
                ],
            )
        )
    body: list[Node] = [
        ("Owner", owner(svc)),
        ("Buckets", buckets),
        ("Prefix", prefix or None),
    ]
    return send_xml(call, render("ListAllMyBucketsResult", body))


async def head_bucket(svc: Services, call: S3Call) -> bytes:
    """200 with the bucket's region, or 404 with no body (API Reference, HeadBucket)."""
    bucket_of(svc, call)
    call.set_header("x-amz-bucket-region", svc.config.region)
    call.set_header("x-amz-access-point-alias", "false")
    call.set_header("Content-Type", "application/xml")
    call.set_header("Content-Length", "0")
    return b""


async def get_bucket_location(svc: Services, call: S3Call) -> bytes:
    """``LocationConstraint``: empty for us-east-1 (API Reference, GetBucketLocation)."""
    bucket_of(svc, call)
    region = svc.config.region
    return send_xml(call, render("LocationConstraint", "" if region == "us-east-1" else region))


async def get_bucket_versioning(svc: Services, call: S3Call) -> bytes:
    """A never-versioned bucket has an empty configuration (API Reference, GetBucketVersioning)."""
    bucket_of(svc, call)
    return send_xml(call, render("VersioningConfiguration"))


async def create_bucket(svc: Services, call: S3Call) -> bytes:
    """CreateBucket of a configured bucket is S3's answer to re-creating your own bucket.

    API Reference, CreateBucket, BucketAlreadyOwnedByYou: "Amazon S3 returns
    this error in all AWS Regions except in the North Virginia Region. For
    legacy compatibility, if you re-create an existing bucket that you
    already own in the North Virginia Region, Amazon S3 returns 200 OK".
    Any other name cannot exist here: 501 (README, "Deliberate differences").
    """
    name = call.target.bucket or ""
    if name in svc.storage.buckets:
        _check_create_body(svc, call)
        if svc.config.region != "us-east-1":
            raise S3Error("BucketAlreadyOwnedByYou", extra={"BucketName": name})
        call.set_header("Location", f"/{name}")
        call.set_header("Content-Length", "0")
        return b""
    if not _BUCKET_NAME.fullmatch(name) or ".." in name:
        raise S3Error("InvalidBucketName", extra={"BucketName": name})
    raise S3Error(
        "NotImplemented",
        "plantcdn serves only its configured buckets; CreateBucket is not offered",
    )


def _check_create_body(svc: Services, call: S3Call) -> None:
    """A ``CreateBucketConfiguration`` naming another region is refused as S3 refuses it."""
    call.request.content.seek(0)
    data = call.request.content.read(64 * 1024 + 1)
    if not data.strip():
        return
    root = parse_xml(data, 64 * 1024)
    if local_name(root) != "CreateBucketConfiguration":
        raise S3Error("MalformedXML")
    location = next((c.text for c in root if local_name(c) == "LocationConstraint"), None)
    if location and location != svc.config.region:
        raise S3Error(
            "IllegalLocationConstraintException",
            f"The {location} location constraint is incompatible for the region specific "
            "endpoint this request was sent to.",
            status=400,
        )


async def delete_bucket(svc: Services, call: S3Call) -> bytes:
    """409 BucketNotEmpty while objects remain; an empty configured bucket stays: 501."""
    bucket = bucket_of(svc, call)
    keys, _ = walk_keys(bucket.root)
    if next(keys, None) is not None:
        raise S3Error("BucketNotEmpty", extra={"BucketName": bucket.name})
    raise S3Error(
        "NotImplemented", "plantcdn serves only its configured buckets; they cannot be deleted"
    )


HANDLERS: dict[str, Handler] = {
    "ListObjectsV2": list_objects_v2,
    "ListObjects": list_objects,
    "ListBuckets": list_buckets,
    "HeadBucket": head_bucket,
    "GetBucketLocation": get_bucket_location,
    "GetBucketVersioning": get_bucket_versioning,
    "CreateBucket": create_bucket,
    "DeleteBucket": delete_bucket,
    **deletes.HANDLERS,
    **copyobject.HANDLERS,
    **subresources.HANDLERS,
}
