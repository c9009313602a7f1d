"""The Image Worker's way in: treq requests signed by botocore's SigV4 signer.

The worker does not use boto3: it signs each request with
``botocore.auth.S3SigV4Auth`` and sends it with treq on the reactor.  These
tests do the same against the real daemon.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import pytest_twisted
import treq
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from conftest import INBOX, LONGTERM, REGION, RunningServer, temp_files
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool

BODY = bytes(range(256)) * 400  # 100 KiB


class Worker:
    """A minimal S3 client as the Image Worker has one: botocore signs, treq sends."""

    def __init__(self, server: RunningServer, *, secret: str | None = None) -> None:
        self.server = server
        self.credentials = Credentials(server.access_key, secret or server.secret_key)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))

    def url(self, bucket: str, key: str) -> str:
        return f"{self.server.url}/{bucket}/{quote(key, safe='/~')}"

    def sign(
        self, method: str, url: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        S3SigV4Auth(self.credentials, "s3", REGION).add_auth(request)
        return {k: v for k, v in request.headers.items()}

    async def put(
        self, bucket: str, key: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Any:
        url = self.url(bucket, key)
        return await self.http.put(url, data=body, headers=self.sign("PUT", url, body, headers))

    async def get(self, bucket: str, key: str, headers: Mapping[str, str] | None = None) -> Any:
        url = self.url(bucket, key)
        return await self.http.get(url, headers=self.sign("GET", url, headers=headers))

    async def head(self, bucket: str, key: str) -> Any:
        url = self.url(bucket, key)
        return await self.http.head(url, headers=self.sign("HEAD", url))

    async def close(self) -> None:
        await self.pool.closeCachedConnections()


def header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


def code_of(body: bytes) -> str | None:
    match = re.search(rb"<Code>([^<]*)</Code>", body)
    return match.group(1).decode() if match else None


def etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


@pytest_twisted.ensureDeferred
async def test_put_then_get(server: RunningServer, tenant: str) -> None:
    """A treq PUT signed by botocore is stored; a treq GET reads it back with its headers."""
    worker = Worker(server)
    key = f"{tenant}/thumb_256.webp"
    try:
        put = await worker.put(
            LONGTERM,
            key,
            BODY,
            {"Content-Type": "image/webp", "Cache-Control": "max-age=86400", "x-amz-meta-w": "256"},
        )
        assert put.code == 200, await put.content()
        assert header(put, "ETag") == etag(BODY)
        assert header(put, "x-amz-request-id")
        await put.content()

        got = await worker.get(LONGTERM, key)
        assert got.code == 200
        assert await got.content() == BODY
        assert header(got, "Content-Type") == "image/webp"
        assert header(got, "Cache-Control") == "max-age=86400"
        assert header(got, "x-amz-meta-w") == "256"
        assert header(got, "ETag") == etag(BODY)
        assert (server.bucket_dir(LONGTERM) / key).read_bytes() == BODY
    finally:
        await worker.close()


@pytest_twisted.ensureDeferred
async def test_worker_pipeline_inbox_to_longterm(server: RunningServer, tenant: str) -> None:
    """Read a raw upload from the inbox, write its derivative to long-term storage."""
    s3: Any = server.client()
    raw_key = f"{tenant}/raw/upload.jpg"
    s3.put_object(Bucket=INBOX, Key=raw_key, Body=BODY, ContentType="image/jpeg")
    worker = Worker(server)
    try:
        head = await worker.head(INBOX, raw_key)
        assert head.code == 200
        assert header(head, "Content-Length") == str(len(BODY))
        assert header(head, "Content-Type") == "image/jpeg"

        got = await worker.get(INBOX, raw_key)
        raw = await got.content()
        assert raw == BODY
        derived = raw[::-1]
        out_key = f"{tenant}/derived/upload.webp"
        put = await worker.put(LONGTERM, out_key, derived, {"Content-Type": "image/webp"})
        assert put.code == 200
        await put.content()
    finally:
        await worker.close()
    stored = s3.get_object(Bucket=LONGTERM, Key=out_key)
    assert stored["Body"].read() == BODY[::-1]
    assert stored["ContentType"] == "image/webp"


@pytest_twisted.ensureDeferred
async def test_range_get(server: RunningServer, tenant: str) -> None:
    """A signed Range request through treq answers 206 with the asked bytes."""
    worker = Worker(server)
    key = f"{tenant}/ranged.bin"
    try:
        await (await worker.put(INBOX, key, BODY)).content()
        got = await worker.get(INBOX, key, {"Range": "bytes=1000-1999"})
        assert got.code == 206
        assert header(got, "Content-Range") == f"bytes 1000-1999/{len(BODY)}"
        assert await got.content() == BODY[1000:2000]
    finally:
        await worker.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_puts(server: RunningServer, tenant: str) -> None:
    """Sixteen uploads in flight at once are all stored intact."""
    worker = Worker(server)
    bodies = {f"{tenant}/many/{n}.bin": bytes([n]) * (10_000 + n) for n in range(16)}

    async def one(key: str, body: bytes) -> int:
        response = await worker.put(INBOX, key, body)
        await response.content()
        return int(response.code)

    try:
        codes = await defer.gatherResults(
            [defer.ensureDeferred(one(k, b)) for k, b in bodies.items()]
        )
    finally:
        await worker.close()
    assert codes == [200] * 16
    for key, body in bodies.items():
        assert (server.bucket_dir(INBOX) / key).read_bytes() == body
    assert temp_files(server.bucket_dir(INBOX)) == []


@pytest_twisted.ensureDeferred
async def test_streamed_body_with_unsigned_payload(server: RunningServer, tenant: str) -> None:
    """A 4 MiB body streamed from a file producer with UNSIGNED-PAYLOAD is stored."""
    big = BODY * 41  # ~4 MiB
    key = f"{tenant}/big.bin"
    worker = Worker(server)
    url = worker.url(INBOX, key)
    request = AWSRequest(method="PUT", url=url)
    # Over plain http botocore signs the payload unless the client config says not to.
    request.context["client_config"] = BotoConfig(s3={"payload_signing_enabled": False})
    S3SigV4Auth(worker.credentials, "s3", REGION).add_auth(request)
    headers = dict(request.headers.items())
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    try:
        response = await worker.http.put(
            url, data=FileBodyProducer(io.BytesIO(big)), headers=headers
        )
        assert response.code == 200, await response.content()
        assert header(response, "ETag") == etag(big)
        await response.content()
    finally:
        await worker.close()
    assert (server.bucket_dir(INBOX) / key).read_bytes() == big


@pytest_twisted.ensureDeferred
async def test_wrong_secret_refused(server: RunningServer, tenant: str) -> None:
    """A worker with the wrong secret gets 403 SignatureDoesNotMatch and stores nothing."""
    worker = Worker(server, secret="not-the-secret")
    key = f"{tenant}/refused.bin"
    try:
        response = await worker.put(INBOX, key, BODY)
        body = await response.content()
    finally:
        await worker.close()
    assert (response.code, code_of(body)) == (403, "SignatureDoesNotMatch")
    assert not (server.bucket_dir(INBOX) / key).exists()
    assert temp_files(server.bucket_dir(INBOX)) == []


@pytest_twisted.ensureDeferred
async def test_missing_key(server: RunningServer, tenant: str) -> None:
    """A treq GET of a key never written: 404 NoSuchKey in S3 XML."""
    worker = Worker(server)
    try:
        response = await worker.get(INBOX, f"{tenant}/never-written")
        body = await response.content()
    finally:
        await worker.close()
    assert (response.code, code_of(body)) == (404, "NoSuchKey")
    assert header(response, "x-amz-request-id")


@pytest_twisted.ensureDeferred
async def test_module_level_treq(server: RunningServer, tenant: str) -> None:
    """The module-level ``treq.put``/``treq.get`` work the same (the worker's simplest form)."""
    worker = Worker(server)
    key = f"{tenant}/module.txt"
    url = worker.url(INBOX, key)
    response = await treq.put(url, data=b"module", headers=worker.sign("PUT", url, b"module"))
    assert response.code == 200
    await response.content()
    response = await treq.get(url, headers=worker.sign("GET", url))
    assert await response.content() == b"module"
    await worker.close()
