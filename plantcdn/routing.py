"""Which bucket, which key, which S3 operation: pure request routing.

S3 addresses a bucket either in the path (``/bucket/key``) or in the host
(``bucket.s3.example.com/key``, "virtual-hosted style"), and picks the
operation from the method, the presence of a key and the sub-resource query
parameters (``?uploads``, ``?cors``, ``?list-type=2`` ...).  See the S3 User
Guide, "Virtual hosting of buckets", and the API reference of each action.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import unquote

from attrs import frozen

from plantcdn.errors import S3Error

__all__ = ["Target", "operation_for", "resolve_target"]


@frozen
class Target:
    """What a request addresses.  ``bucket`` None: the service (ListBuckets)."""

    bucket: str | None
    key: str | None
    virtual_hosted: bool

    @property
    def resource(self) -> str:
        """The ``Resource`` element of an error body."""
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + (f"/{self.key}" if self.key is not None else "")


def _decode(raw: str) -> str:
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI") from None


def resolve_target(host: str | None, raw_path: str, base_host: str) -> Target:
    """Split the request line's path (and Host) into bucket and key."""
    if not raw_path.startswith("/"):
        raise S3Error("InvalidURI")
    hostname = (host or "").strip().lower()
    if hostname.startswith("["):
        hostname = hostname.split("]", 1)[0] + "]"
    else:
        hostname = hostname.rsplit(":", 1)[0] if ":" in hostname else hostname
    suffix = "." + base_host
    if hostname.endswith(suffix) and len(hostname) > len(suffix):
        bucket = hostname[: -len(suffix)]
        rest = raw_path[1:]
        return Target(bucket, _decode(rest) if rest else None, True)
    bucket_raw, _, rest = raw_path[1:].partition("/")
    if bucket_raw == "":
        return Target(None, None, False)
    key = _decode(rest) if rest else None
    return Target(_decode(bucket_raw), key, False)


#: Sub-resources of a bucket that plantcdn answers, by method.
_BUCKET_OPS: Mapping[tuple[str, str], str] = {
    ("GET", "cors"): "GetBucketCors",
    ("PUT", "cors"): "PutBucketCors",
    ("DELETE", "cors"): "DeleteBucketCors",
    ("GET", "location"): "GetBucketLocation",
    ("GET", "uploads"): "ListMultipartUploads",
    ("POST", "delete"): "DeleteObjects",
    ("GET", "versioning"): "GetBucketVersioning",
}

#: Sub-resources of a bucket or object that plantcdn does not implement: 501.
_UNSUPPORTED = frozenset(
    {
        "accelerate", "analytics", "encryption", "intelligent-tiering", "inventory",
        "lifecycle", "logging", "metrics", "notification", "object-lock", "ownershipControls",
        "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment",
        "website", "versions", "legal-hold", "retention", "restore", "select", "torrent",
        "attributes", "renameObject", "metadataTable", "session",
    }
)  # fmt: skip


def operation_for(
    method: str, target: Target, query: Collection[str], headers: Mapping[str, str]
) -> str:
    """The S3 action a request asks for (``NotImplemented`` raises 501)."""
    # Methods are case-sensitive (RFC 9110, 9.1): "put" is no PUT, and is refused.
    unsupported = _UNSUPPORTED.intersection(query)
    if unsupported == {"attributes"} and method == "GET" and target.key is not None:
        return "GetObjectAttributes"  # the one use of ?attributes plantcdn answers
    if unsupported:
        raise S3Error("NotImplemented", extra={"Header": sorted(unsupported)[0]})
    if target.bucket is None:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise S3Error("MethodNotAllowed", extra={"Method": method, "ResourceType": "SERVICE"})
    if target.key is None:
        for (op_method, sub), name in _BUCKET_OPS.items():
            if method == op_method and sub in query:
                return name
        if method in ("GET", "PUT", "DELETE") and ({"acl", "tagging"} & set(query)):
            return "BucketSubresource"
        if method == "GET":
            return "ListObjectsV2" if "list-type" in query else "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST":
            return "PostObject"
        if method == "OPTIONS":
            return "Preflight"
        if method == "PUT":
            return "CreateBucket"
        if method == "DELETE":
            return "DeleteBucket"
        raise S3Error("MethodNotAllowed", extra={"Method": method, "ResourceType": "BUCKET"})
    if method == "OPTIONS":
        return "Preflight"
    if "uploadId" in query:
        if method == "PUT" and "partNumber" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if method == "POST":
            return "CompleteMultipartUpload"
        if method == "DELETE":
            return "AbortMultipartUpload"
        if method == "GET":
            return "ListParts"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if "tagging" in query:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(
            method, "DeleteObjectTagging" if method == "DELETE" else "NotImplemented"
        )
    if "acl" in query:
        return {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"}.get(method, "NotImplemented")
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "GET":
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "DeleteObject"
    raise S3Error("MethodNotAllowed", extra={"Method": method, "ResourceType": "OBJECT"})
