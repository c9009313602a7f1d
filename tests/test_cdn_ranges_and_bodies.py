"""Several byte ranges, and GETs with a body, on ``/cdn`` (as CloudFront answers them).

CloudFront follows the RFC for ``Range``: several ranges in ascending order
without overlap are one 206 ``multipart/byteranges`` (RFC 9110 section 14.6),
any other list the whole object with 200 ("How CloudFront processes partial
requests for an object (range GETs)").  A GET with a body is 403 ("Request
and response behavior for Amazon S3 origins").  Requests go out on plain
sockets and ``http.client``; bodies are compared byte for byte.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.signers import CloudFrontSigner
from conftest import RunningServer, clean_env, snapshot
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from test_cdn_support import Reply, fetch, put

from plantcdn.conditions import byte_ranges
from plantcdn.errors import S3Error

BODY = bytes(range(256)) * 40  # 10,240 bytes: small enough for the edge's memory
SIZE = len(BODY)
CRLF = b"\r\n"


def _parts(reply: Reply) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/byteranges`` body, parsed strictly (RFC 9110 14.6)."""
    content_type = reply.header("content-type") or ""
    matched = re.fullmatch(r"multipart/byteranges; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})",
                           content_type)
    assert matched, content_type
    delimiter = b"--" + matched.group(1).encode("ascii")
    body = reply.body
    assert body.startswith(delimiter + CRLF)
    assert body.endswith(CRLF + delimiter + b"--" + CRLF)
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 6)]
    parts = []
    for chunk in inner.split(CRLF + delimiter + CRLF):
        head, separator, data = chunk.partition(CRLF + CRLF)
        assert separator
        fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n"))
        parts.append(({k.lower(): v for k, v in fields.items()}, data))
    return parts


def _stored(server: RunningServer, tenant: str, name: str = "photo.webp",
            body: bytes = BODY) -> tuple[str, str]:
    key = f"{tenant}/{name}"
    etag = str(put(server, key, body, ContentType="image/webp", CacheControl="max-age=60")["ETag"])
    return f"/cdn/{key}", etag


# -- the pure parser ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-1,5-6", [(0, 1), (5, 6)]),
        ("bytes=0-1, 5-", [(0, 1), (5, SIZE - 1)]),
        ("bytes=0-1,-3", [(0, 1), (SIZE - 3, SIZE - 1)]),
        ("bytes = 0 - 1 ,\t2-3", [(0, 1), (2, 3)]),
        ("bytes=0-1,,5-6,", [(0, 1), (5, 6)]),  # empty list elements (RFC 9110 5.6.1)
        ("bytes=0-1,2-3", [(0, 1), (2, 3)]),  # adjacent is not overlapping
        ("bytes=0-1,9000-999999", [(0, 1), (9000, SIZE - 1)]),
        ("bytes=0-1,20000-30000", [(0, 1)]),  # one left: a single range
        ("bytes=0-1,2-" + "9" * 5000, [(0, 1), (2, SIZE - 1)]),  # no int() of 5000 digits
    ],
)
def test_valid_lists_are_their_ranges(header: str, expected: list[tuple[int, int]]) -> None:
    assert byte_ranges(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-6,0-1",  # descending
        "bytes=0-5,3-8",  # overlapping
        "bytes=0-5,5-8",  # one byte shared
        "bytes=0-,5-6",  # an open range runs to the end
        f"bytes=0-1,-{SIZE}",  # the suffix starts before the end of the first
        "bytes=0-1,3-2",  # last before first
        "bytes=0-1,x-3",
        "bytes=0-1,-",
        "bytes=0-1,--3",
        "items=0-1,2-3",
        "bytes 0-1,2-3",
        "bytes=,",
    ],
)
def test_other_lists_are_the_whole_object(header: str) -> None:
    assert byte_ranges(header, SIZE) is None


def test_a_list_of_only_unsatisfiable_ranges_is_invalid_range() -> None:
    with pytest.raises(S3Error) as raised:
        byte_ranges("bytes=20000-20001,30000-", SIZE)
    assert raised.value.code == "InvalidRange"
    assert raised.value.headers == {"Content-Range": f"bytes */{SIZE}"}


# -- several ranges over HTTP -------------------------------------------------------


def test_several_ranges_are_one_multipart_206(server: RunningServer, tenant: str) -> None:
    """Each part has the object's Content-Type, its Content-Range and its bytes."""
    path, etag = _stored(server, tenant)
    reply = fetch(server, path, headers={"Range": "bytes=0-1,5-6,-4"})
    assert reply.status == 206
    assert reply.header("content-length") == str(len(reply.body))
    assert reply.header("content-range") is None
    assert reply.header("etag") == etag
    assert reply.header("accept-ranges") == "bytes"
    assert reply.header("cache-control") == "max-age=60"
    assert reply.header("x-cache") == "Miss from cloudfront"
    assert (reply.header("via") or "").endswith("(CloudFront)")
    assert _parts(reply) == [
        ({"content-type": "image/webp", "content-range": f"bytes 0-1/{SIZE}"}, BODY[0:2]),
        ({"content-type": "image/webp", "content-range": f"bytes 5-6/{SIZE}"}, BODY[5:7]),
        ({"content-type": "image/webp", "content-range": f"bytes {SIZE - 4}-{SIZE - 1}/{SIZE}"},
         BODY[-4:]),
    ]


def test_from_disk_and_from_the_edges_memory_the_parts_are_the_same(
    server: RunningServer, tenant: str
) -> None:
    """The first answer streams from the file, the one after a full GET from memory."""
    path, _etag = _stored(server, tenant)
    wanted = {"Range": "bytes=10-19,100-,"}
    from_disk = fetch(server, path, headers=wanted)
    assert fetch(server, path).body == BODY  # the edge now holds the body
    from_memory = fetch(server, path, headers=wanted)
    assert from_disk.status == from_memory.status == 206
    assert _parts(from_disk) == _parts(from_memory) == [
        ({"content-type": "image/webp", "content-range": f"bytes 10-19/{SIZE}"}, BODY[10:20]),
        ({"content-type": "image/webp", "content-range": f"bytes 100-{SIZE - 1}/{SIZE}"},
         BODY[100:]),
    ]
    assert from_memory.header("x-cache") == "Hit from cloudfront"
    assert from_memory.header("age") is not None
    # Same lengths: the boundaries differ per response, never their size.
    assert from_disk.header("content-length") == from_memory.header("content-length")


def test_ranges_of_a_large_object_stream_across_chunks(server: RunningServer, tenant: str) -> None:
    """Parts longer than a read chunk, and parts that end mid-chunk, arrive exact."""
    body = bytes(range(251)) * 12000  # ~2.9 MiB, a length prime to the chunk size
    path, _etag = _stored(server, tenant, "large.bin", body)
    reply = fetch(server, path, headers={"Range": "bytes=0-0,262143-262144,300000-1500000,-7"})
    assert reply.status == 206
    assert int(reply.header("content-length") or 0) == len(reply.body)
    assert [data for _fields, data in _parts(reply)] == [
        body[0:1], body[262143:262145], body[300000:1500001], body[-7:],
    ]


def test_many_small_ranges_stay_bounded_and_exact(server: RunningServer, tenant: str) -> None:
    """A long list (every other byte of the first 2,000) is served, part for part."""
    path, _etag = _stored(server, tenant)
    spec = ",".join(f"{n}-{n}" for n in range(0, 2000, 2))
    reply = fetch(server, path, headers={"Range": f"bytes={spec}"})
    assert reply.status == 206
    parts = _parts(reply)
    assert len(parts) == 1000
    assert all(data == BODY[n : n + 1] for (_f, data), n in zip(parts, range(0, 2000, 2)))


@pytest.mark.parametrize(
    "header", ["bytes=5-6,0-1", "bytes=0-5,3-8", "bytes=0-,5-6", "bytes=0-1,x-2", "items=0-1,2-3"]
)
def test_descending_overlapping_or_invalid_lists_are_200_with_the_whole_object(
    server: RunningServer, tenant: str, header: str
) -> None:
    path, _etag = _stored(server, tenant)
    reply = fetch(server, path, headers={"Range": header})
    assert reply.status == 200
    assert reply.body == BODY
    assert reply.header("content-type") == "image/webp"
    assert reply.header("content-range") is None


def test_one_satisfiable_range_of_several_is_a_plain_206(
    server: RunningServer, tenant: str
) -> None:
    """No multipart for a single part: Content-Range on the response, as for one range."""
    path, _etag = _stored(server, tenant)
    reply = fetch(server, path, headers={"Range": f"bytes=0-3,{SIZE}-{SIZE + 10}"})
    assert reply.status == 206
    assert reply.header("content-type") == "image/webp"
    assert reply.header("content-range") == f"bytes 0-3/{SIZE}"
    assert reply.body == BODY[:4]


def test_no_satisfiable_range_of_several_is_416(server: RunningServer, tenant: str) -> None:
    path, _etag = _stored(server, tenant)
    reply = fetch(server, path, headers={"Range": f"bytes={SIZE}-{SIZE + 1},{SIZE + 5}-"})
    assert reply.status == 416
    assert reply.header("content-range") == f"bytes */{SIZE}"
    assert reply.header("x-cache") == "Error from cloudfront"
    assert b"<Code>InvalidRange</Code>" in reply.body


def test_head_with_several_ranges_announces_the_multipart_body(
    server: RunningServer, tenant: str
) -> None:
    """Same status, type and length as the GET would have; no body."""
    path, _etag = _stored(server, tenant)
    wanted = {"Range": "bytes=0-1,5-6"}
    head = fetch(server, path, method="HEAD", headers=wanted)
    get = fetch(server, path, headers=wanted)
    assert head.status == get.status == 206
    assert head.body == b""
    assert (head.header("content-type") or "").startswith("multipart/byteranges; boundary=")
    assert head.header("content-length") == get.header("content-length")


def test_conditionals_come_before_several_ranges(server: RunningServer, tenant: str) -> None:
    """304 and 412 as without Range; a true If-Match keeps the 206."""
    path, etag = _stored(server, tenant)
    wanted = {"Range": "bytes=0-1,5-6"}
    assert fetch(server, path, headers={**wanted, "If-None-Match": etag}).status == 304
    refused = fetch(server, path, headers={**wanted, "If-Match": '"other"'})
    assert refused.status == 412
    assert b"<Code>PreconditionFailed</Code>" in refused.body
    assert fetch(server, path, headers={**wanted, "If-Match": etag}).status == 206


def test_if_range_is_treated_alike_for_one_range_and_several(
    server: RunningServer, tenant: str
) -> None:
    """A stale If-Range validator changes a list of ranges no more than a single range."""
    path, etag = _stored(server, tenant)
    for validator in (etag, '"stale"', "Thu, 01 Jan 1970 00:00:00 GMT"):
        one = fetch(server, path, headers={"Range": "bytes=0-1", "If-Range": validator})
        several = fetch(server, path, headers={"Range": "bytes=0-1,5-6", "If-Range": validator})
        assert one.status == several.status


# -- GET with a body --------------------------------------------------------------


class _Socket:
    """One kept-alive connection; requests written byte for byte, answers read in turn."""

    def __init__(self, server: RunningServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.pending:
            self._recv()
        raw_head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {n.lower(): v for n, _, v in (line.partition(": ") for line in lines[1:])}
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            self._recv()
        body, self.pending = self.pending[:length], self.pending[length:]
        return int(lines[0].split(" ")[1]), headers, body

    def _recv(self) -> None:
        data = self.sock.recv(262144)
        assert data, "server closed the connection"
        self.pending += data


@pytest.fixture
def conn(server: RunningServer) -> Iterator[_Socket]:
    connection = _Socket(server)
    yield connection
    connection.close()


def _get(path: str, *fields: str, body: bytes = b"", method: str = "GET",
         host: str = "cdn.example") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _assert_cloudfront_403(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 403
    assert headers["server"] == "CloudFront"
    assert headers["x-cache"] == "Error from cloudfront"
    assert headers["content-type"] == "text/html"
    assert b"<H1>403 ERROR</H1>" in body
    assert b"Generated by cloudfront (CloudFront)" in body
    assert "etag" not in headers


def test_get_with_a_content_length_body_is_403_and_the_connection_goes_on(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, "Content-Length: 11", body=b"hello=world"))
    _assert_cloudfront_403(*conn.response())
    conn.send(_get(path))
    status, _headers, body = conn.response()
    assert (status, body) == (200, BODY)


def test_get_with_a_chunked_body_is_403(server: RunningServer, tenant: str, conn: _Socket) -> None:
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"))
    _assert_cloudfront_403(*conn.response())
    conn.send(_get(path))
    assert conn.response()[0] == 200


def test_pipelined_get_after_a_get_with_a_body_is_answered(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    """The body is consumed, not taken for the next request."""
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, "Content-Length: 4", body=b"GET ") + _get(path, "Range: bytes=0-1,5-6"))
    _assert_cloudfront_403(*conn.response())
    assert conn.response()[0] == 206


def test_get_of_a_remembered_object_with_a_body_is_403(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    """The edge's fast lane never answers a request that carries a body."""
    path, _etag = _stored(server, tenant)
    for _ in range(2):
        conn.send(_get(path))
        assert conn.response()[0] == 200
    conn.send(_get(path, "Content-Length: 2", body=b"{}"))
    _assert_cloudfront_403(*conn.response())


def test_get_with_a_large_body_is_403_and_stores_nothing(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    """A 1 MiB body (spooled by Twisted to a temporary file, never read) changes nothing."""
    path, _etag = _stored(server, tenant)
    before = snapshot(server.bucket_dir("plantdb-longterm"))
    body = b"x" * (1024 * 1024)
    conn.send(_get(path, f"Content-Length: {len(body)}", body=body))
    _assert_cloudfront_403(*conn.response())
    conn.send(_get(path))
    assert conn.response()[0] == 200
    assert snapshot(server.bucket_dir("plantdb-longterm")) == before


def test_get_with_expect_continue_and_a_body_is_403(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, "Content-Length: 5", "Expect: 100-continue"))
    status, _headers, _body = conn.response()
    assert status == 100
    conn.send(b"hello")
    _assert_cloudfront_403(*conn.response())


def test_get_of_a_missing_key_with_a_body_is_403_not_404(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    conn.send(_get(f"/cdn/{tenant}/missing.webp", "Content-Length: 2", body=b"{}"))
    _assert_cloudfront_403(*conn.response())


@pytest.mark.parametrize("fields", [(), ("Content-Length: 0",), ("Content-Length: 000",)])
def test_get_without_a_body_is_served(
    server: RunningServer, tenant: str, conn: _Socket, fields: tuple[str, ...]
) -> None:
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, *fields))
    status, _headers, body = conn.response()
    assert (status, body) == (200, BODY)


def test_head_with_a_body_is_not_refused(
    server: RunningServer, tenant: str, conn: _Socket
) -> None:
    """Only a GET that carries a body is refused (the page names GET requests)."""
    path, _etag = _stored(server, tenant)
    conn.send(_get(path, "Content-Length: 2", body=b"{}", method="HEAD"))
    status, headers, _body = conn.response(head=True)
    assert status == 200
    assert headers["content-length"] == str(SIZE)


# -- signed URLs and CORS still apply ----------------------------------------------

APP = "https://app.plantdb.example"
KEY_ID = "K2JCJMDEHXQW5F"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GUARDED = "company_88/plant_1/photo.webp"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A distribution with signed URLs required and a CORS response headers policy."""
    folder: Path = tmp_path_factory.mktemp("ranges-keys")
    pem = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "keys.json").write_text(json.dumps({KEY_ID: pem.decode()}))
    running = RunningServer(
        tmp_path_factory.mktemp("ranges-data"),
        clean_env({
            "PLANTCDN_FSYNC": "false",
            "PLANTCDN_CLOUDFRONT_PUBLIC_KEYS": str(folder / "keys.json"),
            "PLANTCDN_CDN_CORS_ORIGINS": APP,
        }),
    )
    try:
        put(running, GUARDED, BODY, ContentType="image/webp")
        yield running
    finally:
        running.stop()


def _signed(server: RunningServer) -> str:
    signer = CloudFrontSigner(
        KEY_ID, lambda m: PRIVATE_KEY.sign(m, padding.PKCS1v15(), hashes.SHA1())
    )
    url = signer.generate_presigned_url(
        f"http://127.0.0.1:{server.port}/cdn/{GUARDED}",
        date_less_than=datetime.fromtimestamp(int(time.time()) + 3600, tz=UTC),
    )
    return url[len(f"http://127.0.0.1:{server.port}") :]


def test_several_ranges_need_a_signed_url(guarded: RunningServer) -> None:
    reply = fetch(guarded, f"/cdn/{GUARDED}", headers={"Range": "bytes=0-1,5-6", "Origin": APP})
    assert reply.status == 403
    assert b"<Code>MissingKey</Code>" in reply.body
    assert reply.header("access-control-allow-origin") == APP


def test_several_ranges_of_a_signed_url_carry_cors_headers(guarded: RunningServer) -> None:
    headers = {"Range": "bytes=0-1,5-6", "Origin": APP}
    reply = fetch(guarded, _signed(guarded), headers=headers)
    assert reply.status == 206
    assert reply.header("access-control-allow-origin") == APP
    assert [data for _fields, data in _parts(reply)] == [BODY[0:2], BODY[5:7]]


def test_get_with_a_body_is_403_before_the_signature_and_with_cors(
    guarded: RunningServer,
) -> None:
    """Signed or not, the body decides; the CORS policy still applies to the error."""
    conn = _Socket(guarded)
    try:
        for path in (f"/cdn/{GUARDED}", _signed(guarded)):
            conn.send(_get(path, f"Origin: {APP}", "Content-Length: 2", body=b"{}",
                           host=f"127.0.0.1:{guarded.port}"))
            status, headers, body = conn.response()
            _assert_cloudfront_403(status, headers, body)
            assert headers["access-control-allow-origin"] == APP
    finally:
        conn.close()


def test_leading_zeros_do_not_push_a_range_past_the_end() -> None:
    assert byte_ranges("bytes=0-1,0000000000000000000005-6", SIZE) == [(0, 1), (5, 6)]
