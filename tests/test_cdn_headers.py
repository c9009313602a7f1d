"""``/cdn`` responses: S3's object headers plus the ones a CloudFront edge adds.

Objects are written with boto3 through the running daemon and read back through
``/cdn``; every header a browser or Django template relies on is asserted.
"""

from __future__ import annotations

import email.utils
import re
import time

import pytest
import pytest_twisted
import treq
from conftest import LONGTERM, RunningServer
from test_cdn_support import fetch, put

CF_ID = re.compile(r"[A-Za-z0-9_-]{54}==")
VIA = re.compile(r"1\.1 [0-9a-f]{32}\.cloudfront\.net \(CloudFront\)")
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(range(256)) * 4


def test_stored_headers_are_served(server: RunningServer, tenant: str) -> None:
    """Content-Type, Cache-Control, Content-Disposition, Content-Encoding and metadata are
    the stored values, and the ETag is the one PutObject returned."""
    key = f"{tenant}/photo.webp"
    reply_put = put(
        server,
        key,
        WEBP,
        ContentType="image/webp",
        CacheControl="public, max-age=600",
        ContentDisposition='inline; filename="photo.webp"',
        ContentEncoding="identity",
        Metadata={"plant-id": "2", "Source": "worker"},
    )
    reply = fetch(server, f"/cdn/{key}")
    assert reply.status == 200
    assert reply.body == WEBP
    assert reply.header("content-type") == "image/webp"
    assert reply.header("etag") == reply_put["ETag"]
    assert reply.header("content-length") == str(len(WEBP))
    assert reply.header("accept-ranges") == "bytes"
    assert reply.header("cache-control") == "public, max-age=600"
    assert reply.header("content-disposition") == 'inline; filename="photo.webp"'
    assert reply.header("content-encoding") == "identity"
    assert reply.header("x-amz-meta-plant-id") == "2"
    assert reply.header("x-amz-meta-source") == "worker"
    assert reply.header("server") == "AmazonS3"
    head = server.client().head_object(Bucket=LONGTERM, Key=key)
    assert reply.header("last-modified") == head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]


def test_same_etag_and_last_modified_as_s3_get_object(server: RunningServer, tenant: str) -> None:
    """/cdn and GetObject describe one object identically."""
    key = f"{tenant}/a.jpg"
    put(server, key, b"jpeg bytes", ContentType="image/jpeg")
    s3 = server.client().get_object(Bucket=LONGTERM, Key=key)
    reply = fetch(server, f"/cdn/{key}")
    assert reply.header("etag") == s3["ETag"]
    assert (
        email.utils.parsedate_to_datetime(reply.header("last-modified") or "") == s3["LastModified"]
    )
    assert reply.header("content-type") == s3["ContentType"] == "image/jpeg"


def test_stored_content_type_is_never_replaced_by_a_guess(
    server: RunningServer, tenant: str
) -> None:
    """A .jpg stored as image/webp is served as image/webp."""
    key = f"{tenant}/really-webp.jpg"
    put(server, key, WEBP, ContentType="image/webp")
    assert fetch(server, f"/cdn/{key}").header("content-type") == "image/webp"


def test_object_stored_without_type_is_binary_octet_stream(
    server: RunningServer, tenant: str
) -> None:
    """S3's default type for an upload without Content-Type is kept."""
    key = f"{tenant}/blob.png"
    server.client().put_object(Bucket=LONGTERM, Key=key, Body=b"x")
    assert fetch(server, f"/cdn/{key}").header("content-type") == "binary/octet-stream"


def test_cloudfront_headers_on_every_response(server: RunningServer, tenant: str) -> None:
    """Via, X-Amz-Cf-Pop and a fresh X-Amz-Cf-Id on each response."""
    key = f"{tenant}/cf.webp"
    put(server, key, WEBP, ContentType="image/webp")
    first = fetch(server, f"/cdn/{key}")
    second = fetch(server, f"/cdn/{key}")
    for reply in (first, second):
        assert VIA.fullmatch(reply.header("via") or "")
        assert re.fullmatch(r"[A-Z]{3}[0-9]+-[CP][0-9]", reply.header("x-amz-cf-pop") or "")
        assert CF_ID.fullmatch(reply.header("x-amz-cf-id") or "")
    assert first.header("x-amz-cf-id") != second.header("x-amz-cf-id")
    assert first.header("via") == second.header("via")


def test_first_get_after_a_write_misses_then_hits_with_age(
    server: RunningServer, tenant: str
) -> None:
    """Miss, then Hit with Age counting seconds since the first response."""
    key = f"{tenant}/hit.webp"
    put(server, key, WEBP, ContentType="image/webp")
    miss = fetch(server, f"/cdn/{key}")
    assert miss.header("x-cache") == "Miss from cloudfront"
    assert miss.header("age") is None
    hit = fetch(server, f"/cdn/{key}")
    assert hit.header("x-cache") == "Hit from cloudfront"
    assert hit.header("age") == "0"
    time.sleep(1.1)
    assert int(fetch(server, f"/cdn/{key}").header("age") or "0") >= 1


def test_overwrite_makes_the_next_get_a_miss_with_new_bytes(
    server: RunningServer, tenant: str
) -> None:
    """A write is a new version: Miss again, new ETag, new metadata."""
    key = f"{tenant}/over.webp"
    put(server, key, b"old", ContentType="image/webp", Metadata={"v": "1"})
    fetch(server, f"/cdn/{key}")
    assert fetch(server, f"/cdn/{key}").header("x-cache") == "Hit from cloudfront"
    new_put = put(server, key, b"new bytes", ContentType="image/avif", Metadata={"v": "2"})
    reply = fetch(server, f"/cdn/{key}")
    assert reply.header("x-cache") == "Miss from cloudfront"
    assert reply.body == b"new bytes"
    assert reply.header("etag") == new_put["ETag"]
    assert reply.header("content-type") == "image/avif"
    assert reply.header("x-amz-meta-v") == "2"


def test_head_has_headers_and_no_body(server: RunningServer, tenant: str) -> None:
    """HEAD: same headers as GET (Content-Length of the object), no body."""
    key = f"{tenant}/head.webp"
    put(server, key, WEBP, ContentType="image/webp")
    reply = fetch(server, f"/cdn/{key}", method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert reply.header("content-length") == str(len(WEBP))
    assert reply.header("content-type") == "image/webp"
    assert reply.header("x-cache") == "Miss from cloudfront"


def test_missing_object_is_404_nosuchkey_xml(server: RunningServer, tenant: str) -> None:
    """A key that holds nothing: S3's NoSuchKey document, marked as a CloudFront error."""
    reply = fetch(server, f"/cdn/{tenant}/nothing.webp")
    assert reply.status == 404
    assert reply.header("content-type") == "application/xml"
    assert b"<Code>NoSuchKey</Code>" in reply.body
    assert f"<Key>{tenant}/nothing.webp</Key>".encode() in reply.body
    assert reply.header("x-cache") == "Error from cloudfront"
    assert CF_ID.fullmatch(reply.header("x-amz-cf-id") or "")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_cloudfronts_page(
    server: RunningServer, tenant: str, method: str
) -> None:
    """Only GET, HEAD and OPTIONS reach the object; nothing is written or removed."""
    key = f"{tenant}/m.webp"
    put(server, key, b"keep me", ContentType="image/webp")
    reply = fetch(server, f"/cdn/{key}", method=method)
    assert reply.status == 405
    assert reply.header("allow") == "GET, HEAD, OPTIONS"
    assert reply.header("server") == "CloudFront"
    assert b"This distribution is not configured to allow the HTTP request method" in reply.body
    assert fetch(server, f"/cdn/{key}").body == b"keep me"


def test_large_object_streams_intact(server: RunningServer, tenant: str) -> None:
    """An object larger than one read chunk arrives whole, byte for byte."""
    key = f"{tenant}/big.bin"
    body = bytes(range(256)) * (5 * 1024) + b"tail"  # ~1.25 MiB
    put(server, key, body, ContentType="application/octet-stream")
    reply = fetch(server, f"/cdn/{key}")
    assert reply.status == 200
    assert reply.body == body
    assert reply.header("content-length") == str(len(body))


def test_percent_encoded_key_characters_are_decoded_once(
    server: RunningServer, tenant: str
) -> None:
    """A key with spaces and non-ASCII is reachable at its percent-encoded URL."""
    key = f"{tenant}/blätter und blüten.webp"
    put(server, key, b"umlaut", ContentType="image/webp")
    from urllib.parse import quote

    assert fetch(server, "/cdn/" + quote(key)).body == b"umlaut"


def test_default_cache_control_applies_only_without_a_stored_one(start_server, tenant: str) -> None:
    """PLANTCDN_CDN_CACHE_CONTROL fills in for objects stored without Cache-Control."""
    running = start_server(PLANTCDN_CDN_CACHE_CONTROL="public, max-age=31536000, immutable")
    put(running, f"{tenant}/plain.webp", b"a", ContentType="image/webp")
    put(running, f"{tenant}/own.webp", b"b", ContentType="image/webp", CacheControl="no-cache")
    assert fetch(running, f"/cdn/{tenant}/plain.webp").header("cache-control") == (
        "public, max-age=31536000, immutable"
    )
    assert fetch(running, f"/cdn/{tenant}/own.webp").header("cache-control") == "no-cache"


def test_missing_object_can_be_403_access_denied(start_server, tenant: str) -> None:
    """PLANTCDN_CDN_MISSING=403: what CloudFront with a private S3 origin answers."""
    running = start_server(PLANTCDN_CDN_MISSING="403")
    reply = fetch(running, f"/cdn/{tenant}/nothing.webp")
    assert reply.status == 403
    assert b"<Code>AccessDenied</Code><Message>Access Denied</Message>" in reply.body
    assert b"<Key>" not in reply.body


@pytest_twisted.inlineCallbacks
def test_treq_reads_an_object_with_its_headers(server: RunningServer, tenant: str):
    """A Twisted client (treq) sees the object and its CloudFront headers."""
    key = f"{tenant}/treq.webp"
    put(server, key, WEBP, ContentType="image/webp", CacheControl="max-age=60")
    response = yield treq.get(f"{server.url}/cdn/{key}")
    body = yield response.content()
    assert response.code == 200
    assert body == WEBP
    headers = response.headers
    assert headers.getRawHeaders("content-type") == ["image/webp"]
    assert headers.getRawHeaders("cache-control") == ["max-age=60"]
    assert headers.getRawHeaders("x-cache") == ["Miss from cloudfront"]
    assert VIA.fullmatch(headers.getRawHeaders("via")[0])


def test_client_leaving_mid_body_releases_the_open_file(server: RunningServer, tenant: str) -> None:
    """A download cut short closes the object file in the server (no descriptor leak)."""
    import os
    import socket

    from conftest import wait_until

    key = f"{tenant}/huge.bin"
    put(server, key, b"\0" * (16 * 1024 * 1024))
    target = str(server.bucket_dir(LONGTERM) / key)

    def open_copies() -> int:
        fds = f"/proc/{server.process.pid}/fd"
        count = 0
        for name in os.listdir(fds):
            try:
                count += os.readlink(f"{fds}/{name}") == target
            except OSError:
                pass
        return count

    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /cdn/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: open_copies() == 1)
    sock.close()
    assert wait_until(lambda: open_copies() == 0)
