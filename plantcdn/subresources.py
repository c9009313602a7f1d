"""Object tagging and ACL calls (and their bucket-level siblings), never a 500.

django-storages and boto3 send ``x-amz-acl`` / ``x-amz-tagging`` on uploads
and may call ``?tagging`` / ``?acl``.  Tags live in the object's metadata in
the ``x-amz-tagging`` header form (``k=v&k2=v2``, URL-encoded), so a tag set
from PutObject and one from PutObjectTagging read back the same.  ACLs are
reported as the owner's FULL_CONTROL (plus the grant a stored canned ACL
implies); only canned ACLs can be set.  Pages followed: API Reference
GetObjectTagging, PutObjectTagging, DeleteObjectTagging, GetObjectAcl,
PutObjectAcl, GetBucketAcl; User Guide "Categorizing your storage using tags"
for the tag limits.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode
from xml.etree.ElementTree import Element

from attrs import evolve

from plantcdn.call import Handler, S3Call, Services
from plantcdn.errors import S3Error
from plantcdn.objects import CANNED_ACLS
from plantcdn.s3shared import (
    bucket_of,
    check_version_id,
    key_of,
    owner,
    read_xml_request,
    send_xml,
)
from plantcdn.storage import Bucket, ObjectMeta, StoredObject
from plantcdn.xmlbody import Node, child, children, local_name, render

__all__ = ["HANDLERS", "parse_tag_set", "tags_from_header"]

MAX_OBJECT_TAGS = 10
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MAX_TAGGING_BODY = 64 * 1024
MAX_ACL_BODY = 64 * 1024
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
_MALFORMED_ACL = (
    "The XML you provided was not well-formed or did not validate against our published schema"
)
_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
_AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


# -- tags ---------------------------------------------------------------------


def tags_from_header(value: str | None) -> list[tuple[str, str]]:
    """The tag set stored as ``x-amz-tagging`` (``k=v&k2=v2``)."""
    if not value:
        return []
    return parse_qsl(value, keep_blank_values=True)


def validate_tags(tags: list[tuple[str, str]]) -> None:
    """S3's tag rules: at most 10, keys 1-128 and values 0-256 characters, keys unique."""
    if len(tags) > MAX_OBJECT_TAGS:
        raise S3Error("BadRequest", "Object tags cannot be greater than 10", status=400)
    seen: set[str] = set()
    for key, value in tags:
        if not key or len(key) > MAX_TAG_KEY:
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid")
        if len(value) > MAX_TAG_VALUE:
            raise S3Error("InvalidTag", "The TagValue you have provided is too long, max 256")
        if key.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:")
        if key in seen:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        seen.add(key)


def parse_tag_set(call: S3Call) -> list[tuple[str, str]]:
    """``<Tagging><TagSet><Tag><Key/><Value/></Tag>...`` from the request body."""
    root = read_xml_request(call, max_bytes=MAX_TAGGING_BODY, checksum_required=True)
    return tags_of(root)


def tags_of(root: Element) -> list[tuple[str, str]]:
    """The valid tag set of a parsed ``<Tagging>`` document (PutObjectTagging's rules)."""
    tag_set = child(root, "TagSet") if local_name(root) == "Tagging" else None
    if tag_set is None:
        raise S3Error("MalformedXML")
    tags: list[tuple[str, str]] = []
    for tag in children(tag_set, "Tag"):
        key, value = child(tag, "Key"), child(tag, "Value")
        if key is None or value is None:
            raise S3Error("MalformedXML")
        tags.append((key.text or "", value.text or ""))
    validate_tags(tags)
    return tags


def _find(svc: Services, call: S3Call) -> tuple[Bucket, str, StoredObject]:
    bucket = bucket_of(svc, call)
    key = key_of(call)
    check_version_id(call)
    found = svc.storage.find(bucket, key)
    if found is None:
        raise S3Error("NoSuchKey", extra={"Key": key})
    return bucket, key, found


def _update(svc: Services, call: S3Call, meta: ObjectMeta) -> None:
    bucket, key, found = _find(svc, call)
    if not svc.storage.update_meta(bucket, found, key, meta):
        raise S3Error("NoSuchKey", extra={"Key": key})


async def get_object_tagging(svc: Services, call: S3Call) -> bytes:
    _, _, found = _find(svc, call)
    tags: list[Node] = [
        ("Tag", [("Key", k), ("Value", v)]) for k, v in tags_from_header(found.meta.tagging)
    ]
    return send_xml(call, render("Tagging", [("TagSet", tags)]))


async def put_object_tagging(svc: Services, call: S3Call) -> bytes:
    _, _, found = _find(svc, call)
    tags = parse_tag_set(call)
    stored = urlencode(tags, quote_via=quote) if tags else None
    _update(svc, call, evolve(found.meta, tagging=stored))
    call.set_header("Content-Length", "0")
    return b""


async def delete_object_tagging(svc: Services, call: S3Call) -> bytes:
    _, _, found = _find(svc, call)
    if found.meta.tagging is not None:
        _update(svc, call, evolve(found.meta, tagging=None))
    call.request.setResponseCode(204)
    return b""


# -- ACLs -----------------------------------------------------------------------


def _policy(svc: Services, canned: str | None) -> bytes:
    """The ``AccessControlPolicy`` S3 reports for an object with *canned* ACL."""
    me = owner(svc)
    grants: list[Node] = [
        (
            "Grant",
            [(f'Grantee {_XSI} xsi:type="CanonicalUser"', me), ("Permission", "FULL_CONTROL")],
        )
    ]
    group = {
        "public-read": [(_ALL_USERS, "READ")],
        "public-read-write": [(_ALL_USERS, "READ"), (_ALL_USERS, "WRITE")],
        "authenticated-read": [(_AUTHENTICATED, "READ")],
    }.get(canned or "private", [])
    for uri, permission in group:
        grants.append(
            (
                "Grant",
                [(f'Grantee {_XSI} xsi:type="Group"', [("URI", uri)]), ("Permission", permission)],
            )
        )
    return render("AccessControlPolicy", [("Owner", me), ("AccessControlList", grants)])


def _canned_acl(call: S3Call) -> str | None:
    """The ``x-amz-acl`` of a PutObjectAcl / PutBucketAcl, or None for an XML policy body.

    A full ``AccessControlPolicy`` body is checked for well-formedness and
    otherwise accepted without effect (README, "Deliberate differences").
    """
    acl = call.headers.get("x-amz-acl")
    if acl is not None:
        if acl not in CANNED_ACLS:
            raise S3Error(
                "InvalidArgument", extra={"ArgumentName": "x-amz-acl", "ArgumentValue": acl}
            )
        return acl
    if any(name.startswith("x-amz-grant-") for name in call.headers):
        return None
    length = call.headers.get("content-length", "0").strip()
    if length in ("", "0") and "x-amz-decoded-content-length" not in call.headers:
        raise S3Error(
            "MissingSecurityHeader",
            "Your request was missing a required header",
            extra={"MissingHeaderName": "x-amz-acl"},
        )
    root = read_xml_request(call, max_bytes=MAX_ACL_BODY, checksum_required=False)
    if local_name(root) != "AccessControlPolicy":
        raise S3Error("MalformedACLError", _MALFORMED_ACL, status=400)
    return None


async def get_object_acl(svc: Services, call: S3Call) -> bytes:
    _, _, found = _find(svc, call)
    return send_xml(call, _policy(svc, found.meta.acl))


async def put_object_acl(svc: Services, call: S3Call) -> bytes:
    _, _, found = _find(svc, call)
    acl = _canned_acl(call)
    if acl is not None and acl != found.meta.acl:
        _update(svc, call, evolve(found.meta, acl=acl))
    call.set_header("Content-Length", "0")
    return b""


async def bucket_subresource(svc: Services, call: S3Call) -> bytes:
    """``?acl`` and ``?tagging`` on a bucket (routing's ``BucketSubresource``).

    Bucket ACLs report the owner's FULL_CONTROL and accept canned ACLs
    without effect; buckets carry no tags (GetBucketTagging: 404
    NoSuchTagSet), and PutBucketTagging is not offered.
    """
    bucket_of(svc, call)
    if "acl" in call.query:
        if call.method == "GET":
            return send_xml(call, _policy(svc, None))
        if call.method == "PUT":
            _canned_acl(call)
            call.set_header("Content-Length", "0")
            return b""
        raise S3Error("MethodNotAllowed", extra={"Method": call.method, "ResourceType": "ACL"})
    if call.method == "GET":
        raise S3Error(
            "NoSuchTagSet",
            "The TagSet does not exist",
            status=404,
            extra={"BucketName": call.target.bucket or ""},
        )
    if call.method == "DELETE":
        call.request.setResponseCode(204)
        return b""
    raise S3Error("NotImplemented", "PutBucketTagging is not implemented by plantcdn")


HANDLERS: dict[str, Handler] = {
    "GetObjectTagging": get_object_tagging,
    "PutObjectTagging": put_object_tagging,
    "DeleteObjectTagging": delete_object_tagging,
    "GetObjectAcl": get_object_acl,
    "PutObjectAcl": put_object_acl,
    "BucketSubresource": bucket_subresource,
}
