"""PutObject payload modes against the real daemon, built by hand per the SigV4 streaming spec.

AWS pages followed (Amazon S3 API Reference): "Signature Calculations for the
Authorization Header: Transferring Payload in Multiple Chunks (Chunked Upload)"
and "Signature calculations for trailing headers (chunked uploads)".  The seed
request is signed by botocore; chunk and trailer signatures by plantcdn's own
``derive_signing_key``/``sign`` helpers, which the pure tests check against
AWS's published vectors.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot, temp_files, wait_until

from plantcdn.sigv4 import EMPTY_SHA256, derive_signing_key, sign

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#: 150 KiB of varied bytes: two full 64 KiB chunks and a short last one.
BODY = bytes((n * 7 + n // 251) % 256 for n in range(150 * 1024))
CHUNK = 64 * 1024


class PayloadAuth(S3SigV4Auth):
    """botocore's S3 signer with a chosen ``x-amz-content-sha256`` value."""

    def __init__(self, credentials: Credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        return self._payload_hash


@attrs.frozen
class Seed:
    """What chunk signatures chain from: the request's own signature and scope."""

    key: bytes
    amz_date: str
    scope: str
    signature: str


@attrs.define
class Upload:
    method: str
    target: str
    headers: dict[str, str]
    seed: Seed


def seed_request(
    server: RunningServer,
    key: str,
    *,
    mode: str,
    decoded_length: int | None,
    headers: Mapping[str, str] | None = None,
    bucket: str = INBOX,
) -> Upload:
    """A PutObject whose headers botocore signs with the streaming *mode*.

    *decoded_length* None: not an aws-chunked body (*mode* is then its hash).
    """
    framing = (
        {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded_length)}
        if decoded_length is not None
        else {}
    )
    all_headers = {**framing, **(headers or {})}
    request = AWSRequest(method="PUT", url=f"{server.url}/{bucket}/{key}", headers=all_headers)
    PayloadAuth(Credentials(server.access_key, server.secret_key), mode).add_auth(request)
    prepared = request.prepare()
    signed_headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    authorization = signed_headers["Authorization"]
    signature = authorization.rsplit("Signature=", 1)[1]
    credential = re.search(r"Credential=([^,]+)", authorization)
    assert credential is not None
    scope = credential.group(1).split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    seed = Seed(
        key=derive_signing_key(server.secret_key, date, region, service),
        amz_date=signed_headers["X-Amz-Date"],
        scope=scope,
        signature=signature,
    )
    return Upload("PUT", urlsplit(prepared.url).path, signed_headers, seed)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def chunk_signature(seed: Seed, previous: str, data: bytes) -> str:
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            seed.amz_date,
            seed.scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(data).hexdigest(),
        ]
    )
    return sign(seed.key, string_to_sign)


def trailer_signature(seed: Seed, previous: str, trailer: str) -> str:
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            seed.amz_date,
            seed.scope,
            previous,
            hashlib.sha256(trailer.encode()).hexdigest(),
        ]
    )
    return sign(seed.key, string_to_sign)


def frame(
    body: bytes,
    *,
    mode: str,
    seed: Seed,
    chunk_size: int = CHUNK,
    trailer: tuple[str, str] | None = None,
    tamper_data: int | None = None,
    tamper_signature: int | None = None,
    tamper_trailer_signature: bool = False,
) -> bytes:
    """The aws-chunked body: every chunk (then the empty one) and the trailer.

    *tamper_data* / *tamper_signature*: the index of a chunk whose data (after
    signing) or signature is altered on the wire.
    """
    pieces = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] + [b""]
    signed = mode != UNSIGNED_TRAILER
    previous = seed.signature
    out = bytearray()
    for index, data in enumerate(pieces):
        header = f"{len(data):x}"
        if signed:
            signature = chunk_signature(seed, previous, data)
            previous = signature
            if index == tamper_signature:
                signature = ("0" if signature[0] != "0" else "1") + signature[1:]
            header += f";chunk-signature={signature}"
        wire = data
        if index == tamper_data and data:
            wire = bytes([data[0] ^ 0x01]) + data[1:]
        out += header.encode() + b"\r\n"
        if data:
            out += wire + b"\r\n"
    if trailer is not None:
        line = f"{trailer[0]}:{trailer[1]}"
        out += line.encode() + b"\r\n"
        if mode == SIGNED_TRAILER:
            signature = trailer_signature(seed, previous, line + "\n")
            if tamper_trailer_signature:
                signature = ("0" if signature[0] != "0" else "1") + signature[1:]
            out += f"x-amz-trailer-signature:{signature}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def send(
    server: RunningServer, upload: Upload, body: bytes, *, piece: int | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send *body* (in *piece*-sized writes when given, as a slow client would)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.putrequest(upload.method, upload.target, skip_accept_encoding=True)
        for name, value in upload.headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        step = piece or len(body) or 1
        for start in range(0, len(body), step):
            conn.send(body[start : start + step])
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def code_of(body: bytes) -> str | None:
    match = re.search(rb"<Code>([^<]*)</Code>", body)
    return match.group(1).decode() if match else None


def etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def trailer_headers(mode: str) -> dict[str, str]:
    return {"x-amz-trailer": "x-amz-checksum-crc32"} if mode != SIGNED else {}


# ---------------------------------------------------------------------------
# Accepted uploads


def test_unsigned_payload(server: RunningServer, tenant: str) -> None:
    """``UNSIGNED-PAYLOAD`` stores the body as sent, whatever its hash."""
    key = f"{tenant}/unsigned.bin"
    request = AWSRequest(method="PUT", url=f"{server.url}/{INBOX}/{key}", data=BODY)
    PayloadAuth(Credentials(server.access_key, server.secret_key), "UNSIGNED-PAYLOAD").add_auth(
        request
    )
    prepared = request.prepare()
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    upload = Upload("PUT", f"/{INBOX}/{key}", headers, Seed(b"", "", "", ""))
    status, response, _ = send(server, upload, BODY)
    assert status == 200
    assert response["ETag"] == etag(BODY)
    assert (server.bucket_dir(INBOX) / key).read_bytes() == BODY


@pytest.mark.parametrize("mode", [SIGNED, UNSIGNED_TRAILER, SIGNED_TRAILER])
@pytest.mark.parametrize("piece", [None, 1000], ids=["whole", "in-pieces"])
def test_streaming_upload_is_stored_without_framing(
    server: RunningServer, tenant: str, mode: str, piece: int | None
) -> None:
    """Each aws-chunked mode stores the decoded bytes, ETag the MD5 of those bytes."""
    key = f"{tenant}/streamed.bin"
    upload = seed_request(
        server,
        key,
        mode=mode,
        decoded_length=len(BODY),
        headers={"Content-Type": "application/octet-stream", **trailer_headers(mode)},
    )
    trailer = ("x-amz-checksum-crc32", crc32_b64(BODY)) if mode != SIGNED else None
    body = frame(BODY, mode=mode, seed=upload.seed, trailer=trailer)
    status, headers, response = send(server, upload, body, piece=piece)
    assert status == 200, response
    assert headers["ETag"] == etag(BODY)
    if trailer is not None:
        assert headers["x-amz-checksum-crc32"] == crc32_b64(BODY)
    assert (server.bucket_dir(INBOX) / key).read_bytes() == BODY
    assert temp_files(server.bucket_dir(INBOX)) == []
    s3: Any = server.client()
    head = s3.head_object(Bucket=INBOX, Key=key)
    assert head["ContentLength"] == len(BODY)
    assert "ContentEncoding" not in head
    got = s3.get_object(Bucket=INBOX, Key=key)
    assert got["Body"].read() == BODY


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("aws-chunked,gzip", "gzip"), ("gzip,aws-chunked", "gzip"), ("aws-chunked", None)],
)
def test_stored_content_encoding_drops_aws_chunked(
    server: RunningServer, tenant: str, sent: str, stored: str | None
) -> None:
    """``aws-chunked`` is a transport coding: the stored Content-Encoding keeps the rest."""
    key = f"{tenant}/encoded.bin"
    upload = seed_request(
        server, key, mode=SIGNED, decoded_length=len(BODY), headers={"Content-Encoding": sent}
    )
    status, _, response = send(server, upload, frame(BODY, mode=SIGNED, seed=upload.seed))
    assert status == 200, response
    head: Any = server.client().head_object(Bucket=INBOX, Key=key)
    assert head.get("ContentEncoding") == stored


def test_small_single_chunk_and_empty_body(server: RunningServer, tenant: str) -> None:
    """A body smaller than 8 KiB is one chunk; an empty body is just the final chunk."""
    for name, data in (("small.txt", b"tiny body"), ("empty.txt", b"")):
        key = f"{tenant}/{name}"
        upload = seed_request(server, key, mode=SIGNED, decoded_length=len(data), bucket=LONGTERM)
        status, headers, response = send(server, upload, frame(data, mode=SIGNED, seed=upload.seed))
        assert status == 200, response
        assert headers["ETag"] == etag(data)
        assert (server.bucket_dir(LONGTERM) / key).read_bytes() == data


# ---------------------------------------------------------------------------
# Refused uploads: nothing stored, nothing left behind


def refuse(
    server: RunningServer,
    upload: Upload,
    body: bytes,
    status: int,
    code: str,
    *,
    piece: int | None = None,
) -> None:
    folder = server.bucket_dir(INBOX)
    before = snapshot(folder)
    got, headers, response = send(server, upload, body, piece=piece)
    assert (got, code_of(response)) == (status, code), response
    assert headers.get("x-amz-request-id")
    assert snapshot(folder) == before
    assert temp_files(folder) == []


@pytest.fixture
def existing(server: RunningServer, tenant: str) -> str:
    """``{tenant}/target.bin`` already holds other bytes, which a refusal must keep."""
    key = f"{tenant}/target.bin"
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=key, Body=b"previous version")
    return key


@pytest.mark.parametrize("mode", [SIGNED, SIGNED_TRAILER])
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"tamper_data": 0}, id="first-chunk-data"),
        pytest.param({"tamper_data": 2}, id="last-chunk-data"),
        pytest.param({"tamper_signature": 1}, id="middle-chunk-signature"),
        pytest.param({"tamper_signature": 3}, id="final-empty-chunk-signature"),
    ],
)
@pytest.mark.parametrize("piece", [None, 4096], ids=["whole", "in-pieces"])
def test_tampered_chunk_is_signature_mismatch(
    server: RunningServer,
    existing: str,
    mode: str,
    tamper: dict[str, int],
    piece: int | None,
) -> None:
    """A chunk whose data or signature changed after signing: 403 SignatureDoesNotMatch."""
    upload = seed_request(
        server, existing, mode=mode, decoded_length=len(BODY), headers=trailer_headers(mode)
    )
    trailer = ("x-amz-checksum-crc32", crc32_b64(BODY)) if mode == SIGNED_TRAILER else None
    body = frame(BODY, mode=mode, seed=upload.seed, trailer=trailer, **tamper)  # type: ignore[arg-type]
    refuse(server, upload, body, 403, "SignatureDoesNotMatch", piece=piece)


def test_chunks_signed_with_another_seed(server: RunningServer, existing: str) -> None:
    """Chunk signatures must chain from this request's signature, not another's."""
    upload = seed_request(server, existing, mode=SIGNED, decoded_length=len(BODY))
    other = seed_request(
        server, existing, mode=SIGNED, decoded_length=len(BODY), headers={"x-amz-meta-a": "b"}
    )
    refuse(server, upload, frame(BODY, mode=SIGNED, seed=other.seed), 403, "SignatureDoesNotMatch")


@pytest.mark.parametrize("mode", [UNSIGNED_TRAILER, SIGNED_TRAILER])
def test_wrong_trailer_checksum_is_bad_digest(
    server: RunningServer, existing: str, mode: str
) -> None:
    """A trailer checksum that does not match the body: 400 BadDigest."""
    upload = seed_request(
        server, existing, mode=mode, decoded_length=len(BODY), headers=trailer_headers(mode)
    )
    wrong = ("x-amz-checksum-crc32", crc32_b64(b"not the body"))
    refuse(
        server, upload, frame(BODY, mode=mode, seed=upload.seed, trailer=wrong), 400, "BadDigest"
    )


def test_tampered_trailer_signature(server: RunningServer, existing: str) -> None:
    """A signed trailer whose signature is wrong: 403 SignatureDoesNotMatch."""
    upload = seed_request(
        server,
        existing,
        mode=SIGNED_TRAILER,
        decoded_length=len(BODY),
        headers=trailer_headers(SIGNED_TRAILER),
    )
    body = frame(
        BODY,
        mode=SIGNED_TRAILER,
        seed=upload.seed,
        trailer=("x-amz-checksum-crc32", crc32_b64(BODY)),
        tamper_trailer_signature=True,
    )
    refuse(server, upload, body, 403, "SignatureDoesNotMatch")


@pytest.mark.parametrize("mode", [UNSIGNED_TRAILER, SIGNED_TRAILER])
def test_malformed_trailer_checksum(server: RunningServer, existing: str, mode: str) -> None:
    """A trailer checksum that is not a base64 CRC32 is refused as S3 refuses it."""
    upload = seed_request(
        server, existing, mode=mode, decoded_length=len(BODY), headers=trailer_headers(mode)
    )
    bad = ("x-amz-checksum-crc32", "not-base64!")
    refuse(
        server, upload, frame(BODY, mode=mode, seed=upload.seed, trailer=bad), 400, "InvalidRequest"
    )


def test_missing_trailer(server: RunningServer, existing: str) -> None:
    """A declared x-amz-trailer that never comes: 400 MalformedTrailerError."""
    upload = seed_request(
        server,
        existing,
        mode=UNSIGNED_TRAILER,
        decoded_length=len(BODY),
        headers=trailer_headers(UNSIGNED_TRAILER),
    )
    body = frame(BODY, mode=UNSIGNED_TRAILER, seed=upload.seed, trailer=None)
    refuse(server, upload, body, 400, "MalformedTrailerError")


def test_decoded_length_mismatch(server: RunningServer, existing: str) -> None:
    """x-amz-decoded-content-length that differs from the chunks: 400 IncompleteBody."""
    upload = seed_request(server, existing, mode=SIGNED, decoded_length=len(BODY) + 1)
    refuse(server, upload, frame(BODY, mode=SIGNED, seed=upload.seed), 400, "IncompleteBody")


def test_small_non_final_chunk(server: RunningServer, existing: str) -> None:
    """Every chunk but the last must hold 8 KiB: 403 InvalidChunkSizeError."""
    upload = seed_request(server, existing, mode=SIGNED, decoded_length=len(BODY))
    body = frame(BODY, mode=SIGNED, seed=upload.seed, chunk_size=4096)
    refuse(server, upload, body, 403, "InvalidChunkSizeError")


def test_truncated_body(server: RunningServer, existing: str) -> None:
    """A body cut before its final chunk: 400 IncompleteBody, nothing stored."""
    upload = seed_request(server, existing, mode=SIGNED, decoded_length=len(BODY))
    body = frame(BODY, mode=SIGNED, seed=upload.seed)
    cut = body[: len(body) // 2]
    refuse(server, upload, cut, 400, "IncompleteBody")


def test_checksum_header_checked_against_decoded_body(server: RunningServer, existing: str) -> None:
    """A plain x-amz-checksum-crc32 header is verified against the decoded body too."""
    upload = seed_request(
        server,
        existing,
        mode=SIGNED,
        decoded_length=len(BODY),
        headers={"x-amz-checksum-crc32": crc32_b64(b"other")},
    )
    refuse(server, upload, frame(BODY, mode=SIGNED, seed=upload.seed), 400, "BadDigest")


@pytest.mark.parametrize("mode", [SIGNED, "body-hash"])
def test_client_gone_mid_upload_leaves_nothing(
    server: RunningServer, existing: str, mode: str
) -> None:
    """A client that disconnects half-way through its body leaves no file and no temp file."""
    folder = server.bucket_dir(INBOX)
    before = snapshot(folder)
    if mode == SIGNED:
        upload = seed_request(server, existing, mode=SIGNED, decoded_length=len(BODY))
        body = frame(BODY, mode=SIGNED, seed=upload.seed)
    else:
        upload = seed_request(
            server, existing, mode=hashlib.sha256(BODY).hexdigest(), decoded_length=None
        )
        body = BODY
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("PUT", upload.target, skip_accept_encoding=True)
    for name, value in upload.headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[: len(body) // 2])
    assert conn.sock is not None
    conn.sock.close()
    conn.close()
    assert wait_until(lambda: temp_files(folder) == [])
    assert snapshot(folder) == before
