"""Hard limits, each answered with AWS's error code, before the server spends on them.

Each case sends one request over a limit to the real daemon and checks the
status and S3 ``Code``; where the limit is about size, that the answer comes
before the body is sent (or without the server's memory growing).
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, RunningServer, snapshot, temp_files

GiB = 1024**3
MiB = 1024**2


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def _exchange(server: RunningServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send *head* (and *body*); the status and body of the answer, read by Content-Length."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    status = int(header.split(b" ", 2)[1]) if header else 0
    return status, rest


def _presigned_head(url: str, method: str, length: int, extra: str = "") -> bytes:
    parts = urlsplit(url)
    return (
        f"{method} {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _rss_kib(server: RunningServer) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- objects ------------------------------------------------------------------------------


def test_put_over_5_gib_is_refused_before_the_body(server: RunningServer, tenant: str) -> None:
    """Content-Length 5 GiB + 1: 400 EntityTooLarge answered with no body byte sent."""
    url = server.client().generate_presigned_url(  # type: ignore[attr-defined]
        "put_object", Params={"Bucket": INBOX, "Key": f"{tenant}/huge.bin"}, ExpiresIn=300
    )
    status, body = _exchange(server, _presigned_head(url, "PUT", 5 * GiB + 1))
    assert status == 400
    assert b"<Code>EntityTooLarge</Code>" in body
    assert b"<MaxSizeAllowed>5368709120</MaxSizeAllowed>" in body
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_key_of_1024_bytes_is_taken_and_1025_refused(server: RunningServer, tenant: str) -> None:
    """S3 keys are at most 1024 bytes of UTF-8: one more is 400 KeyTooLongError."""
    s3: Any = server.client()
    base = f"{tenant}/"
    segments = (1024 - len(base)) // 101
    key = base + "/".join(["k" * 100] * segments)
    key += "/" + "k" * (1024 - len(key) - 1)
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=LONGTERM, Key=key, Body=b"ok")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=LONGTERM, Key=key + "k", Body=b"no")
    assert _code(info.value) == (400, "KeyTooLongError")


def test_user_metadata_over_2_kb_is_refused(server: RunningServer, tenant: str) -> None:
    """User metadata (names + values) over 2 KB: 400 MetadataTooLarge; 2 KB exactly is taken."""
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/meta-ok", Body=b"x",
                  Metadata={"m": "v" * 2047})
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=INBOX, Key=f"{tenant}/meta-big", Body=b"x",
                      Metadata={"m": "v" * 2048})
    assert _code(info.value) == (400, "MetadataTooLarge")
    assert snapshot(server.bucket_dir(INBOX)) == before


# -- the request head ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["many-bytes", "many-headers", "one-long-line"])
def test_oversized_header_section_gets_a_clean_400(server: RunningServer, shape: str) -> None:
    """Over Twisted's head limits (16 KiB, 500 headers, a 16 KiB line): 400
    RequestHeaderSectionTooLarge as S3 XML, then the server serves the next client."""
    if shape == "many-bytes":
        headers = "".join(f"x-filler-{i}: {'a' * 200}\r\n" for i in range(90))
    elif shape == "many-headers":
        headers = "".join(f"x-h{i}: 1\r\n" for i in range(600))
    else:
        headers = f"x-long: {'a' * 20000}\r\n"
    head = f"GET /{INBOX}/company_1/plant_1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
    status, body = _exchange(server, head.encode())
    assert status == 400
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in body
    health = requests.get(f"{server.url}/_plantcdn/health", timeout=10)
    assert health.status_code == 200


# -- POST forms -------------------------------------------------------------------------------


def _form(fields: list[tuple[str, str]], file_body: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode()
        for name, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        .encode() + file_body + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def test_post_field_over_20_kb_is_refused(server: RunningServer, tenant: str) -> None:
    """Form fields before the file over 20 KB: 400 MaxPostPreDataLengthExceededError."""
    post = server.client().generate_presigned_post(INBOX, f"{tenant}/p")  # type: ignore[attr-defined]
    fields = [*post["fields"].items(), ("x-amz-meta-big", "b" * 21 * 1024)]
    content_type, body = _form(fields, b"data")
    before = snapshot(server.bucket_dir(INBOX))
    response = requests.post(post["url"], data=body, headers={"Content-Type": content_type},
                             timeout=30)
    assert response.status_code == 400
    assert b"<Code>MaxPostPreDataLengthExceededError</Code>" in response.content
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_post_with_too_many_parts_is_refused(server: RunningServer, tenant: str) -> None:
    """More than 1000 form parts: refused (400) without storing anything."""
    post = server.client().generate_presigned_post(INBOX, f"{tenant}/many")  # type: ignore[attr-defined]
    fields = [*post["fields"].items(), *[(f"x-ignored-{i}", "") for i in range(1100)]]
    content_type, body = _form(fields, b"data")
    before = snapshot(server.bucket_dir(INBOX))
    response = requests.post(post["url"], data=body, headers={"Content-Type": content_type},
                             timeout=30)
    assert response.status_code == 400
    assert b"<Code>" in response.content
    assert snapshot(server.bucket_dir(INBOX)) == before


# -- aws-chunked ----------------------------------------------------------------------------


def _chunked_put(server: RunningServer, key: str, chunks: list[tuple[int, bytes]]) -> bytes:
    """A STREAMING-UNSIGNED-PAYLOAD-TRAILER PUT (headers signed by botocore) whose chunk
    headers declare the sizes given; the status and body of the answer."""
    from test_s3_payload_modes import UNSIGNED_TRAILER, seed_request

    body = b"".join(b"%x\r\n%s\r\n" % (size, data) for size, data in chunks)
    decoded = sum(len(data) for _, data in chunks)
    upload = seed_request(server, key, mode=UNSIGNED_TRAILER, decoded_length=decoded)
    head = f"PUT {upload.target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in upload.headers.items()
    ) + f"Content-Length: {len(body)}\r\n\r\n"
    status, answer = _exchange(server, head.encode(), body)
    return b"%d " % status + answer


def test_aws_chunked_chunk_size_bounds(server: RunningServer, tenant: str) -> None:
    """A chunk declared over 16 MiB is refused at its header (400 InvalidArgument); a
    non-final chunk under 8 KiB is 403 InvalidChunkSizeError, as S3 answers; nothing stored."""
    before = snapshot(server.bucket_dir(INBOX))
    huge = _chunked_put(server, f"{tenant}/c1", [(64 * MiB, b"")])
    small = _chunked_put(server, f"{tenant}/c2", [(10, b"a" * 10), (10, b"b" * 10), (0, b"")])
    assert huge.startswith(b"400 ") and b"<Code>InvalidArgument</Code>" in huge, huge[:300]
    assert small.startswith(b"403 ") and b"<Code>InvalidChunkSizeError</Code>" in small, small[:300]
    assert snapshot(server.bucket_dir(INBOX)) == before


# -- XML bodies -------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Delete><Object><Key>&lol9;</Key></Object></Delete>"""


@pytest.fixture
def xml_targets(server: RunningServer, tenant: str) -> Iterator[dict[str, tuple[str, str]]]:
    """(method, path?query) of the three XML-body operations; the upload is aborted after
    (other tests of the shared daemon count the uploads in progress)."""
    s3: Any = server.client()
    key = f"{tenant}/mp"
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    yield {
        "DeleteObjects": ("POST", f"/{INBOX}?delete"),
        "CompleteMultipartUpload": ("POST", f"/{INBOX}/{key}?uploadId={upload_id}"),
        "PutBucketCors": ("PUT", f"/{INBOX}?cors"),
    }
    s3.abort_multipart_upload(Bucket=INBOX, Key=key, UploadId=upload_id)


def _signed_head(
    server: RunningServer, method: str, target: str, length: int, **headers: str
) -> bytes:
    """A request head botocore signs (UNSIGNED-PAYLOAD, so the body need not exist)."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from test_s3_payload_modes import PayloadAuth

    request = AWSRequest(method=method, url=f"{server.url}{target}", headers=headers)
    PayloadAuth(Credentials(server.access_key, server.secret_key), "UNSIGNED-PAYLOAD").add_auth(
        request
    )
    prepared = request.prepare()
    lines = "".join(
        f"{name}: {value}\r\n" for name, value in prepared.headers.items()
        if name.lower() != "content-length"
    )
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{lines}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("operation", ["DeleteObjects", "CompleteMultipartUpload",
                                       "PutBucketCors"])
def test_entity_expansion_is_malformed_xml_and_memory_stays_flat(
    server: RunningServer, xml_targets: dict[str, tuple[str, str]], operation: str
) -> None:
    """A billion-laughs body: 400 MalformedXML, and the server's RSS grows by < 16 MiB."""
    method, target = xml_targets[operation]
    md5 = base64.b64encode(hashlib.md5(BILLION_LAUGHS).digest()).decode()
    before = _rss_kib(server)
    for _ in range(5):
        head = _signed_head(server, method, target, len(BILLION_LAUGHS), **{"Content-MD5": md5})
        status, body = _exchange(server, head, BILLION_LAUGHS)
        assert status == 400, body[:300]
        assert b"<Code>MalformedXML</Code>" in body
    assert _rss_kib(server) - before < 16 * 1024


@pytest.mark.parametrize("operation", ["DeleteObjects", "CompleteMultipartUpload",
                                       "PutBucketCors"])
def test_xml_body_far_over_its_limit_is_refused_before_the_body(
    server: RunningServer, xml_targets: dict[str, tuple[str, str]], operation: str
) -> None:
    """A 1 GiB XML body is refused from its Content-Length (400), never read or spooled."""
    method, target = xml_targets[operation]
    head = _signed_head(server, method, target, GiB, **{"Content-MD5": "A" * 22 + "=="})
    status, body = _exchange(server, head)
    assert status == 400
    assert b"<Code>MaxMessageLengthExceeded</Code>" in body


def _chunked_until_answered(
    server: RunningServer, head: bytes, total: int
) -> tuple[int, bytes, int]:
    """Send *head* then a chunked body of up to *total* bytes, 256 KiB a chunk, until the
    server answers; the status, the answer's body and how many body bytes were sent."""
    piece = b"x" * (256 * 1024)
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        while b"</Error>" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    header, _, body = answer.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1]) if header else 0
    return status, body, sent


def _chunked_head(head: bytes) -> bytes:
    """*head* (from _signed_head) sending its body chunked instead of by length."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length")]
    return b"\r\n".join(lines[:-2]) + b"\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("operation", ["DeleteObjects", "CompleteMultipartUpload",
                                       "PutBucketCors"])
def test_chunked_xml_body_is_refused_as_it_passes_its_limit(
    server: RunningServer, xml_targets: dict[str, tuple[str, str]], operation: str
) -> None:
    """Without a Content-Length to judge, a chunked XML body is cut off once past the
    limit any handler reads: 400 MaxMessageLengthExceeded, long before 64 MiB are in."""
    method, target = xml_targets[operation]
    head = _chunked_head(_signed_head(server, method, target, 0))
    status, body, sent = _chunked_until_answered(server, head, 64 * MiB)
    assert status == 400, body[:300]
    assert b"<Code>MaxMessageLengthExceeded</Code>" in body
    assert sent < 32 * MiB


@pytest.mark.parametrize("method", ["PUT", "POST", "GET"])
def test_bodies_sent_to_the_cdn_or_ops_paths_are_not_spooled_without_bound(
    server: RunningServer, method: str
) -> None:
    for path in ("/cdn/company_1/plant_1/x.webp", "/_plantcdn/health"):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        status, body, sent = _chunked_until_answered(
            server, head + b"Transfer-Encoding: chunked\r\n\r\n", 64 * MiB
        )
        assert status == 400, (path, body[:300])
        assert b"<Code>MaxMessageLengthExceeded</Code>" in body
        assert sent < 32 * MiB
        status, body = _exchange(server, head + b"Content-Length: %d\r\n\r\n" % GiB)
        assert status == 400
        assert b"<Code>MaxMessageLengthExceeded</Code>" in body
