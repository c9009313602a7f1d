"""DeleteObject and DeleteObjects.

S3 answers a delete of a missing key with success (API Reference,
DeleteObject: "If there isn't a null version, Amazon S3 does not remove any
objects but will still respond that the command was successful"), so a
client that retries a delete never sees an error for it.  Removing an
object also removes its metadata and the folders it leaves empty, never the
bucket folder (see :meth:`plantcdn.storage.Storage.delete`).
"""

from __future__ import annotations

from twisted.logger import Logger

from plantcdn.call import Handler, S3Call, Services
from plantcdn.conditions import etag_matches
from plantcdn.errors import ERRORS, S3Error
from plantcdn.s3shared import bucket_of, check_version_id, key_of, read_xml_request, send_xml
from plantcdn.storage import Bucket
from plantcdn.writer import durably
from plantcdn.xmlbody import Node, child, child_text, children, local_name, render

__all__ = ["HANDLERS"]

log = Logger()

#: "The request can contain a list of up to 1,000 keys" (API Reference, DeleteObjects).
MAX_DELETE_KEYS = 1000
#: 1000 keys of up to 1024 bytes, escaped, with their elements: generous but bounded.
MAX_DELETE_BODY = 4 * 1024 * 1024


async def delete_object(svc: Services, call: S3Call) -> bytes:
    """204 whether or not the key existed; ``If-Match`` makes the delete conditional.

    API Reference, DeleteObject: ``If-Match`` "deletes the object if the ETag
    matches" -- 412 PreconditionFailed otherwise, 404 NoSuchKey when there
    is no object to compare with.
    """
    bucket = bucket_of(svc, call)
    key = key_of(call)
    check_version_id(call)
    if_match = call.headers.get("if-match")
    if if_match is not None:
        found = svc.storage.find(bucket, key)
        if found is None:
            raise S3Error("NoSuchKey", extra={"Key": key})
        if not etag_matches(if_match, found.meta.etag):
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Match"})
    _remove(svc, bucket, key)
    await _sync(svc, bucket, [key])
    call.request.setResponseCode(204)
    return b""


async def _sync(svc: Services, bucket: Bucket, keys: list[str]) -> None:
    """Deletes are durable before they are acknowledged (fsync on), on the thread pool:
    a folder's fsync must not stall every other connection."""
    if not svc.storage.fsync or not keys:
        return
    try:
        await durably(svc.clock, True, svc.storage.sync_removals, bucket, keys)
    except OSError as exc:
        log.error("could not sync deletes: {error}", error=str(exc))
        raise S3Error("InternalError") from exc  # a retry of a delete is harmless


def _remove(svc: Services, bucket: Bucket, key: str) -> None:
    try:
        svc.storage.delete(bucket, key)
    except S3Error:
        pass  # a key that could not be stored (syntax) names nothing: deleted, as S3 says
    except OSError as exc:
        log.error("could not delete {key}: {error}", key=key, error=str(exc))
        raise S3Error("InternalError") from exc


async def delete_objects(svc: Services, call: S3Call) -> bytes:
    """Up to 1000 deletes in one request, each reported as ``Deleted`` or ``Error``.

    API Reference, DeleteObjects: Content-MD5 or an ``x-amz-checksum-*`` is
    required; more than 1000 keys is MalformedXML; ``Quiet`` leaves out the
    successes.  A failing key does not stop the others.
    """
    bucket = bucket_of(svc, call)
    root = read_xml_request(call, max_bytes=MAX_DELETE_BODY, checksum_required=True)
    if local_name(root) != "Delete":
        raise S3Error("MalformedXML")
    quiet = (child_text(root, "Quiet") or "false").strip().lower() == "true"
    wanted: list[tuple[str, str | None, str | None]] = []
    for element in children(root, "Object"):
        if len(wanted) >= MAX_DELETE_KEYS:
            raise S3Error("MalformedXML")
        key_element = child(element, "Key")
        if key_element is None:
            raise S3Error("MalformedXML")
        wanted.append(
            (key_element.text or "", child_text(element, "VersionId"), child_text(element, "ETag"))
        )
    if not wanted:
        raise S3Error("MalformedXML")
    results: list[Node] = []
    removed: list[str] = []
    for key, version, etag in wanted:
        outcome = _out_of_scope(svc, call, bucket, key) or _delete_one(
            svc, bucket, key, version, etag
        )
        if outcome is None:
            removed.append(key)
            if not quiet:
                deleted: list[Node] = [("Key", key)]
                if version is not None:
                    deleted.append(("VersionId", version))
                results.append(("Deleted", deleted))
        else:
            code, message = outcome
            failed: list[Node] = [("Key", key)]
            if version is not None:
                failed.append(("VersionId", version))
            failed += [("Code", code), ("Message", message)]
            results.append(("Error", failed))
    await _sync(svc, bucket, removed)
    return send_xml(call, render("DeleteResult", results))


def _out_of_scope(svc: Services, call: S3Call, bucket: Bucket, key: str) -> tuple[str, str] | None:
    """Scoped credentials: a key outside the signer's scope gets its own AccessDenied entry,
    as S3 reports a key an IAM policy denies, and the other keys are still deleted."""
    signer = call.auth.access_key_id if call.auth is not None else None
    try:
        svc.verifier.authorize(signer, "DeleteObject", bucket.name, key)
    except S3Error as error:
        return error.code, error.message
    return None


def _delete_one(
    svc: Services, bucket: Bucket, key: str, version: str | None, etag: str | None
) -> tuple[str, str] | None:
    """None when *key* is gone, else the (Code, Message) of its ``Error`` entry."""
    if version is not None and version != "null":
        return "NoSuchVersion", "The specified version does not exist."
    if etag is not None:
        found = svc.storage.find(bucket, key)
        if found is None:
            return "NoSuchKey", ERRORS["NoSuchKey"][1]
        if not etag_matches(etag, found.meta.etag):
            return "PreconditionFailed", ERRORS["PreconditionFailed"][1]
    try:
        _remove(svc, bucket, key)
    except S3Error as error:
        return error.code, error.message
    return None


HANDLERS: dict[str, Handler] = {
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
}
