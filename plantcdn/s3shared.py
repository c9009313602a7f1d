"""Small pieces the bucket, delete, copy, tagging and ACL handlers share.

The owner plantcdn reports, how an XML answer is sent, how a checksummed XML
request body is read, and the ``versionId`` rule of an unversioned bucket.
"""

from __future__ import annotations

import hashlib
from xml.etree.ElementTree import Element

from plantcdn.call import S3Call, Services
from plantcdn.errors import S3Error
from plantcdn.objects import payload_reader
from plantcdn.storage import Bucket
from plantcdn.xmlbody import Node, parse_xml

__all__ = [
    "bucket_of",
    "check_version_id",
    "key_of",
    "owner",
    "read_xml_request",
    "send_xml",
]

#: What a sub-resource that needs a body says when it has none (DeleteObjects
#: and PutObjectTagging are ``requestChecksumRequired`` in the S3 API model).
MISSING_CHECKSUM = "Missing required header for this request: Content-MD5 OR x-amz-checksum-*"


_NOT_CHECKSUM_VALUES = frozenset(
    {"x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"}
)


def bucket_of(svc: Services, call: S3Call) -> Bucket:
    """The addressed bucket, or 404 NoSuchBucket."""
    assert call.target.bucket is not None
    return svc.storage.bucket(call.target.bucket)


def key_of(call: S3Call) -> str:
    assert call.target.key is not None
    return call.target.key


def owner(svc: Services) -> list[Node]:
    """The ``Owner`` children: a stable 64-hex canonical id, as S3 shows one.

    Derived from the account id (or the access key when none is set), so it
    stays the same across restarts and never reveals a secret.
    """
    basis = svc.config.account_id or svc.config.credentials[0].access_key_id
    canonical = hashlib.sha256(f"plantcdn-owner:{basis}".encode()).hexdigest()
    return [("ID", canonical), ("DisplayName", "plantcdn")]


def send_xml(call: S3Call, body: bytes, status: int = 200) -> bytes:
    """An XML answer with its length (no chunked encoding, as S3 sends it)."""
    call.request.setResponseCode(status)
    call.set_header("Content-Type", "application/xml")
    call.set_header("Content-Length", str(len(body)))
    return body


def check_version_id(call: S3Call) -> None:
    """Buckets here are unversioned: only the ``null`` version exists.

    S3 answers 400 InvalidArgument "Invalid version id specified" for a
    version id that cannot exist in the bucket (API Reference, GetObject and
    DeleteObject, ``versionId``).
    """
    version = call.query.get("versionId")
    if version is not None and version != "null":
        raise S3Error(
            "InvalidArgument",
            "Invalid version id specified",
            extra={"ArgumentName": "versionId", "ArgumentValue": version},
        )


def read_xml_request(call: S3Call, *, max_bytes: int, checksum_required: bool) -> Element:
    """The request's XML body, its integrity checked as S3 checks it.

    ``Content-MD5``, ``x-amz-checksum-*`` and a signed ``x-amz-content-sha256``
    are all verified (BadDigest, XAmzContentSHA256Mismatch); operations the
    API model marks ``requestChecksumRequired`` (DeleteObjects,
    PutObjectTagging) refuse a body with neither MD5 nor checksum.  The body
    is read in at most ``max_bytes + 1`` bytes, so memory stays bounded.
    """
    has_checksum = (
        "content-md5" in call.headers
        or any(
            name.startswith("x-amz-checksum-") and name not in _NOT_CHECKSUM_VALUES
            for name in call.headers
        )
        or bool(call.headers.get("x-amz-trailer"))
    )
    if checksum_required and not has_checksum:
        raise S3Error("InvalidRequest", MISSING_CHECKSUM)
    digest, decoder = payload_reader(call)
    source = call.request.content
    source.seek(0)
    raw = source.read(max_bytes * 2 + 65536 if decoder is not None else max_bytes + 1)
    data = decoder.feed(raw) if decoder is not None else raw
    if len(data) > max_bytes:
        raise S3Error("MalformedXML")
    digest.update(data)
    trailers = decoder.finish() if decoder is not None else {}
    digest.finish(trailers if isinstance(trailers, dict) else {})
    return parse_xml(data, max_bytes)
