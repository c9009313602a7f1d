"""Several byte ranges on ``/cdn`` (as CloudFront answers them).

CloudFront follows the RFC for ``Range``: several ranges in ascending order
without overlap are one 206 ``multipart/byteranges`` (RFC 9110 section 14.6),
any other list the whole object with 200 ("How CloudFront processes partial
requests for an object (range GETs)").  Requests go out on ``http.client``;
bodies are compared byte for byte.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.signers import CloudFrontSigner
from conftest import RunningServer, clean_env
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from test_cdn_support import Reply, fetch, put

from plantcdn.cdn import byte_ranges
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
