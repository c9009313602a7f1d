"""GetObjectAttributes: what HeadObject and ListParts would say, in one XML answer.

``GET /{bucket}/{key}?attributes`` with ``x-amz-object-attributes: ETag,Checksum,...``
answers ``<GetObjectAttributesResponse>`` holding only the requested elements
(API Reference, GetObjectAttributes; shapes ``GetObjectAttributesOutput``,
``Checksum`` and ``GetObjectAttributesParts`` of the S3 service model).  It is
a read: scoped keys need the "read" category, as for HeadObject, and the same
conditional headers apply.

What AWS does beyond the reference page, and is followed here:

* the ``ETag`` element has no quotes (unlike every other ETag S3 sends);
* a composite multipart checksum is sent without its ``-<parts>`` suffix;
* ``ObjectParts`` appears only for multipart objects, and without additional
  per-part checksums only ``PartsCount`` (``TotalPartsCount`` in the SDKs) --
  plantcdn keeps no per-part record after completion, so that is all it sends;
* a missing or empty header is 400 ``InvalidRequest``; an unknown name is 400
  ``InvalidArgument`` "Invalid attribute name specified." naming the value.
"""

from __future__ import annotations

from plantcdn.call import Handler, S3Call, Services
from plantcdn.conditions import NOT_MODIFIED, evaluate_preconditions
from plantcdn.digests import ALGORITHMS
from plantcdn.errors import S3Error
from plantcdn.s3shared import check_version_id, send_xml
from plantcdn.storage import ObjectMeta
from plantcdn.xmlbody import Node, render

__all__ = ["ATTRIBUTES", "HANDLERS", "attribute_nodes", "parse_attributes"]

#: The ``ObjectAttributes`` enum of the S3 service model, in response order.
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")

HEADER = "x-amz-object-attributes"
MISSING_ATTRIBUTES = (
    "The x-amz-object-attributes header specifying the attributes to be retrieved "
    "is either missing or empty"
)


def parse_attributes(value: str | None) -> frozenset[str]:
    """The attribute names a request asks for, or the 400 S3 answers.

    SDKs send one comma-separated header (repeated headers arrive joined with
    commas too); blank items are ignored and names are case-sensitive, as the
    model's enum is.
    """
    names = [piece.strip() for piece in (value or "").split(",")]
    names = [name for name in names if name]
    if not names:
        raise S3Error("InvalidRequest", MISSING_ATTRIBUTES)
    for name in names:
        if name not in ATTRIBUTES:
            raise S3Error(
                "InvalidArgument",
                "Invalid attribute name specified.",
                extra={"ArgumentName": HEADER, "ArgumentValue": name},
            )
    return frozenset(names)


def _checksum_nodes(meta: ObjectMeta) -> list[Node] | None:
    """The ``Checksum`` children, or None when the object was stored without one."""
    if not meta.checksums:
        return None
    nodes: list[Node] = []
    for algorithm in ALGORITHMS:
        value = meta.checksums.get(algorithm)
        if value is None:
            continue
        if meta.checksum_type == "COMPOSITE":
            # Stored as HeadObject sends it ("<base64>-<parts>"); this API drops the count.
            head, dash, count = value.rpartition("-")
            value = head if dash and count.isdigit() else value
        nodes.append((f"Checksum{algorithm}", value))
    if meta.checksum_type:
        nodes.append(("ChecksumType", meta.checksum_type))
    return nodes


def attribute_nodes(meta: ObjectMeta, wanted: frozenset[str]) -> list[Node]:
    """The response's elements for *wanted*; ones that do not apply are left out."""
    return [
        ("ETag", meta.etag.strip('"') if "ETag" in wanted else None),
        ("Checksum", _checksum_nodes(meta) if "Checksum" in wanted else None),
        (
            "ObjectParts",
            [("PartsCount", meta.parts_count)]
            if "ObjectParts" in wanted and meta.parts_count
            else None,
        ),
        ("StorageClass", (meta.storage_class or "STANDARD") if "StorageClass" in wanted else None),
        ("ObjectSize", meta.size if "ObjectSize" in wanted else None),
    ]


async def get_object_attributes(svc: Services, call: S3Call) -> bytes:
    wanted = parse_attributes(call.headers.get(HEADER))
    check_version_id(call)
    key = call.key
    found = svc.storage.find(svc.bucket(call), key)
    if found is None:
        raise S3Error("NoSuchKey", extra={"Key": key})
    meta = found.meta
    verdict = evaluate_preconditions(call.headers, meta.etag, meta.last_modified, now=call.now)
    if verdict == NOT_MODIFIED:
        call.request.setResponseCode(304)
        call.set_header("ETag", meta.etag)
        call.set_header("Last-Modified", meta.http_last_modified)
        return b""
    call.set_header("Last-Modified", meta.http_last_modified)
    return send_xml(call, render("GetObjectAttributesResponse", attribute_nodes(meta, wanted)))


HANDLERS: dict[str, Handler] = {"GetObjectAttributes": get_object_attributes}
