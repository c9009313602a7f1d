"""Bucket CORS: configuration, preflight and response headers.

The operations of the S3 API Reference "PutBucketCors", "GetBucketCors",
"DeleteBucketCors" and "OPTIONS object" (preflight), plus
:func:`apply_cors`, which the app calls for every S3 request so that the
headers of the matching rule reach the actual response -- errors included,
as on S3 -- and a browser may read what the rule exposes (``ETag`` ...).
The rules themselves are pure (:mod:`plantcdn.corsrules`); this module keeps
them on disk.

Where a bucket's configuration lives
    ``{bucket folder}/.plantcdn/cors.json``, the same JSON shape as
    ``aws s3api put-bucket-cors`` takes, written atomically.  ``PutBucketCors``
    and ``DeleteBucketCors`` change it, so a configuration survives restarts.
    Buckets named in the ``PLANTCDN_CORS_CONFIG`` file get that file's rules
    each time plantcdn starts (before its first request), the way an
    infrastructure script would apply them to a real bucket; other buckets
    keep whatever was last put.  Readers check the file's identity (inode,
    size, mtime) on each CORS request, so a change is seen at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import weakref
from pathlib import Path

from attrs import frozen
from twisted.logger import Logger

from plantcdn.call import Handler, S3Call, Services
from plantcdn.corsrules import (
    MAX_CONFIG_BYTES,
    CorsConfiguration,
    match_rule,
    preflight_headers,
    response_headers,
    split_header_list,
)
from plantcdn.digests import PayloadDigest, checksums_from_headers
from plantcdn.errors import S3Error
from plantcdn.sigv4 import STREAMING_MODES, UNSIGNED_PAYLOAD
from plantcdn.storage import Bucket, Storage
from plantcdn.xmlbody import parse_xml, read_body

__all__ = ["HANDLERS", "CorsStore", "apply_cors", "store_for"]

log = Logger()

CORS_FILE = "cors.json"
#: The persisted file is plantcdn's own JSON of at most 100 rules; anything much
#: larger was not written by plantcdn.
_MAX_FILE_BYTES = 4 * MAX_CONFIG_BYTES


@frozen
class _Cached:
    identity: tuple[int, int, int]
    config: CorsConfiguration | None


class CorsStore:
    """The CORS configurations of one :class:`~plantcdn.storage.Storage`'s buckets."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._cache: dict[str, _Cached] = {}
        for name, config in storage.config.bucket_cors:
            if name in storage.buckets:
                self.put(storage.buckets[name], config)

    def _path(self, bucket: Bucket) -> Path:
        return bucket.internal / CORS_FILE

    def get(self, bucket: Bucket) -> CorsConfiguration | None:
        """The bucket's configuration, or None; a damaged file counts as none (logged)."""
        path = self._path(bucket)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            self._cache.pop(bucket.name, None)
            return None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(bucket.name)
        if cached is not None and cached.identity == identity:
            return cached.config
        config: CorsConfiguration | None = None
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
            if len(raw) > _MAX_FILE_BYTES:
                raise ValueError("too large")
            config = CorsConfiguration.from_json(json.loads(raw))
        except (OSError, ValueError, S3Error) as exc:
            log.error(
                "ignoring the unreadable CORS configuration {path}: {error}",
                path=str(path),
                error=str(exc),
            )
        self._cache[bucket.name] = _Cached(identity, config)
        return config

    def put(self, bucket: Bucket, config: CorsConfiguration) -> None:
        """Replace the configuration: write a temporary file, then rename it over the old."""
        path = self._path(bucket)
        bucket.tmp_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(config.to_json(), indent=2).encode("utf-8")
        # In tmp/ (same filesystem, so the rename is atomic) a crash leaves nothing
        # behind: start-up empties tmp/.
        tmp = bucket.tmp_dir / f"{CORS_FILE}.{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            try:
                os.write(fd, data)
                if self.storage.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._cache.pop(bucket.name, None)

    def delete(self, bucket: Bucket) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(bucket).unlink()
        self._cache.pop(bucket.name, None)


_stores: weakref.WeakKeyDictionary[Storage, CorsStore] = weakref.WeakKeyDictionary()


def store_for(storage: Storage) -> CorsStore:
    """The one store of *storage*, created (and seeded from the start-up file) on first use."""
    store = _stores.get(storage)
    if store is None:
        store = _stores[storage] = CorsStore(storage)
    return store


# --------------------------------------------------------------------------
# Actual requests


def apply_cors(svc: Services, call: S3Call) -> None:
    """Add the matching rule's headers to the response of a CORS request.

    Called by the app for every S3 request before its handler runs, so the
    headers are in place whether the handler succeeds or raises.  Only a
    request that carries ``Origin``, to a bucket with a configuration, whose
    origin and method a rule allows, gets any ("If the request does not
    match any rule, S3 does not add CORS headers", User Guide, "How does
    Amazon S3 evaluate the CORS configuration").  Never raises: CORS
    decoration must not turn an answer into a 500.
    """
    origin = call.headers.get("origin")
    if not origin or call.operation == "Preflight" or call.target.bucket is None:
        return
    bucket = svc.storage.buckets.get(call.target.bucket)
    if bucket is None:
        return
    try:
        config = store_for(svc.storage).get(bucket)
        if config is None:
            return
        method = call.headers.get("access-control-request-method") or call.method
        wanted = split_header_list(call.headers.get("access-control-request-headers"))
        rule = match_rule(config, origin, method, wanted)
        if rule is None:
            return
        for name, value in response_headers(rule, origin).items():
            call.set_header(name, value)
    except Exception:
        log.failure("CORS headers for {bucket} failed", bucket=bucket.name)


# --------------------------------------------------------------------------
# Operations



async def preflight(svc: Services, call: S3Call) -> bytes:
    """``OPTIONS``: answer a browser's preflight from the bucket's rules (no signature)."""
    assert call.target.bucket is not None
    bucket = svc.storage.buckets.get(call.target.bucket)
    headers = preflight_headers(
        store_for(svc.storage).get(bucket) if bucket is not None else None,
        bucket_exists=bucket is not None,
        origin=call.headers.get("origin"),
        method=call.headers.get("access-control-request-method"),
        request_headers=call.headers.get("access-control-request-headers"),
        resource_type="OBJECT" if call.target.key is not None else "BUCKET",
    )
    for name, value in headers.items():
        call.set_header(name, value)
    call.request.setResponseCode(200)
    call.set_header("Content-Length", "0")
    return b""


def _read_configuration(call: S3Call) -> CorsConfiguration:
    """The body of ``PutBucketCors``: bounded, integrity-checked, parsed without entities."""
    assert call.auth is not None
    mode = call.auth.payload_hash
    if mode in STREAMING_MODES:
        raise S3Error("NotImplemented", "aws-chunked bodies are only accepted for objects")
    checksums = checksums_from_headers(call.headers)
    content_md5 = call.headers.get("content-md5")
    if content_md5 is None and not checksums:
        # PutBucketCors requires an integrity header ("Content-MD5 ... is
        # required", API Reference, PutBucketCors); botocore always sends one.
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-Md5.")
    body = read_body(call.request.content, MAX_CONFIG_BYTES)
    digest = PayloadDigest(
        content_md5=content_md5,
        content_sha256=None if mode == UNSIGNED_PAYLOAD else mode,
        checksums=checksums,
    )
    digest.update(body)
    digest.finish()
    return CorsConfiguration.from_xml(parse_xml(body, MAX_CONFIG_BYTES))


async def put_bucket_cors(svc: Services, call: S3Call) -> bytes:
    bucket = svc.bucket(call)
    config = _read_configuration(call)
    store_for(svc.storage).put(bucket, config)
    log.info(
        "CORS configuration of {bucket} replaced ({rules} rules)",
        bucket=bucket.name,
        rules=len(config.rules),
    )
    call.set_header("Content-Length", "0")
    return b""


async def get_bucket_cors(svc: Services, call: S3Call) -> bytes:
    bucket = svc.bucket(call)
    config = store_for(svc.storage).get(bucket)
    if config is None:
        raise S3Error("NoSuchCORSConfiguration", extra={"BucketName": bucket.name})
    body = config.to_xml()
    call.set_header("Content-Type", "application/xml")
    call.set_header("Content-Length", str(len(body)))
    return body


async def delete_bucket_cors(svc: Services, call: S3Call) -> bytes:
    """204 whether or not there was a configuration, as S3 answers."""
    bucket = svc.bucket(call)
    store_for(svc.storage).delete(bucket)
    call.request.setResponseCode(204)
    return b""


HANDLERS: dict[str, Handler] = {
    "Preflight": preflight,
    "PutBucketCors": put_bucket_cors,
    "GetBucketCors": get_bucket_cors,
    "DeleteBucketCors": delete_bucket_cors,
}
