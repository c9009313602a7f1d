"""Conditional and range requests on ``/cdn`` (GetObject's rules, as CloudFront passes them on)."""

from __future__ import annotations

import email.utils
import time

import pytest
from conftest import RunningServer
from test_cdn_support import fetch, put

BODY = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def stored(server: RunningServer, tenant: str) -> tuple[str, str, str]:
    """An object in the long-term bucket: its /cdn path, ETag and Last-Modified."""
    key = f"{tenant}/photo.webp"
    etag = str(put(server, key, BODY, ContentType="image/webp", CacheControl="max-age=60")["ETag"])
    first = fetch(server, f"/cdn/{key}")
    return f"/cdn/{key}", etag, first.header("last-modified") or ""


def _http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def test_if_none_match_with_the_etag_is_304_without_body(server, stored) -> None:
    """304 repeats ETag, Last-Modified and Cache-Control and sends no body."""
    path, etag, last_modified = stored
    reply = fetch(server, path, headers={"If-None-Match": etag})
    assert reply.status == 304
    assert reply.body == b""
    assert reply.header("etag") == etag
    assert reply.header("last-modified") == last_modified
    assert reply.header("cache-control") == "max-age=60"
    assert reply.header("x-cache") == "Hit from cloudfront"


def test_if_none_match_star_is_304(server, stored) -> None:
    """``*`` matches any existing object."""
    path, _etag, _lm = stored
    assert fetch(server, path, headers={"If-None-Match": "*"}).status == 304


def test_if_none_match_with_another_etag_is_200(server, stored) -> None:
    """A stale validator gets the object."""
    path, _etag, _lm = stored
    reply = fetch(server, path, headers={"If-None-Match": '"0123456789abcdef0123456789abcdef"'})
    assert reply.status == 200
    assert reply.body == BODY


def test_if_modified_since_now_is_304(server, stored) -> None:
    """Not modified since a date after the write."""
    path, _etag, last_modified = stored
    assert fetch(server, path, headers={"If-Modified-Since": last_modified}).status == 304


def test_if_modified_since_before_the_write_is_200(server, stored) -> None:
    path, _etag, _lm = stored
    assert fetch(server, path, headers={"If-Modified-Since": _http_date(-3600)}).status == 200


def test_if_none_match_false_ignores_a_true_if_modified_since(server, stored) -> None:
    """GetObject precedence: If-None-Match decides when present."""
    path, _etag, last_modified = stored
    reply = fetch(
        server, path, headers={"If-None-Match": '"other"', "If-Modified-Since": last_modified}
    )
    assert reply.status == 200


def test_if_match_with_another_etag_is_412(server, stored) -> None:
    """412 with S3's PreconditionFailed document, no object bytes."""
    path, _etag, _lm = stored
    reply = fetch(server, path, headers={"If-Match": '"other"'})
    assert reply.status == 412
    assert b"<Code>PreconditionFailed</Code>" in reply.body
    assert b"<Condition>If-Match</Condition>" in reply.body
    assert reply.header("etag") is None
    assert reply.header("x-cache") == "Error from cloudfront"


def test_if_match_with_the_etag_is_200(server, stored) -> None:
    path, etag, _lm = stored
    assert fetch(server, path, headers={"If-Match": etag}).body == BODY


def test_if_unmodified_since_before_the_write_is_412(server, stored) -> None:
    path, _etag, _lm = stored
    reply = fetch(server, path, headers={"If-Unmodified-Since": _http_date(-3600)})
    assert reply.status == 412
    assert b"<Condition>If-Unmodified-Since</Condition>" in reply.body


def test_true_if_match_ignores_a_false_if_unmodified_since(server, stored) -> None:
    path, etag, _lm = stored
    reply = fetch(
        server, path, headers={"If-Match": etag, "If-Unmodified-Since": _http_date(-3600)}
    )
    assert reply.status == 200


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(BODY) - 1),
        ("bytes=-50", len(BODY) - 50, len(BODY) - 1),
        ("bytes=10000-999999", 10000, len(BODY) - 1),
    ],
)
def test_range_is_206_with_content_range(server, stored, header: str, first: int, last: int):
    """One satisfiable range: 206, the bytes, Content-Range and Content-Length."""
    path, etag, _lm = stored
    reply = fetch(server, path, headers={"Range": header})
    assert reply.status == 206
    assert reply.body == BODY[first : last + 1]
    assert reply.header("content-range") == f"bytes {first}-{last}/{len(BODY)}"
    assert reply.header("content-length") == str(last - first + 1)
    assert reply.header("etag") == etag


def test_range_beyond_the_end_is_416(server, stored) -> None:
    """416 InvalidRange with ``Content-Range: bytes */size``."""
    path, _etag, _lm = stored
    reply = fetch(server, path, headers={"Range": f"bytes={len(BODY)}-"})
    assert reply.status == 416
    assert reply.header("content-range") == f"bytes */{len(BODY)}"
    assert b"<Code>InvalidRange</Code>" in reply.body


def test_several_ranges_out_of_order_get_the_whole_object(server, stored) -> None:
    """CloudFront answers a descending range list with the whole object, 200 (ascending
    lists are 206 multipart/byteranges: test_cdn_ranges_and_bodies)."""
    path, _etag, _lm = stored
    reply = fetch(server, path, headers={"Range": "bytes=5-6,0-1"})
    assert reply.status == 200
    assert reply.body == BODY


def test_range_on_head_has_no_body(server, stored) -> None:
    path, _etag, _lm = stored
    reply = fetch(server, path, method="HEAD", headers={"Range": "bytes=0-9"})
    assert reply.status == 206
    assert reply.body == b""
    assert reply.header("content-length") == "10"


def test_range_of_a_large_object_streams_exactly(server: RunningServer, tenant: str) -> None:
    """A range longer than one read chunk, from the middle of a large object."""
    key = f"{tenant}/large.bin"
    body = bytes(range(256)) * 8192  # 2 MiB
    put(server, key, body)
    reply = fetch(server, f"/cdn/{key}", headers={"Range": "bytes=1000-1500000"})
    assert reply.status == 206
    assert reply.body == body[1000:1500001]
