"""Multipart uploads against the real daemon, driven by boto3 (and a few raw requests).

AWS pages followed (Amazon S3 API Reference): CreateMultipartUpload, UploadPart,
UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
ListMultipartUploads; (User Guide) "Checking object integrity" for composite
and full-object checksums.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot, temp_files, wait_until

MiB = 1024 * 1024
#: boto3's own default threshold and part size: 20 MB becomes parts of 8, 8 and 4 MiB.
TRANSFER = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
BIG = 20 * 1000 * 1000


def data(size: int, seed: int = 0) -> bytes:
    """*size* reproducible, incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def md5(data_: bytes) -> bytes:
    return hashlib.md5(data_).digest()


def multipart_etag(parts: list[bytes]) -> str:
    return '"' + hashlib.md5(b"".join(md5(p) for p in parts)).hexdigest() + f'-{len(parts)}"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32(data_: bytes) -> bytes:
    return zlib.crc32(data_).to_bytes(4, "big")


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def uploads_dir(server: RunningServer, bucket: str) -> Path:
    return server.bucket_dir(bucket) / ".plantcdn" / "multipart"


def live_uploads(server: RunningServer, bucket: str) -> set[str]:
    folder = uploads_dir(server, bucket)
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# ---------------------------------------------------------------------------
# boto3's managed transfers: what Django and the worker actually call


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_upload_file_20mb_is_multipart_and_round_trips(
    server: RunningServer, tenant: str, tmp_path: Path, checksums: str
) -> None:
    """upload_file of 20 MB stores the exact bytes under the ``"<md5 of md5s>-3"`` ETag."""
    s3: Any = server.client(request_checksum_calculation=checksums)
    body = data(BIG)
    source = tmp_path / "photo.jpg"
    source.write_bytes(body)
    key = f"{tenant}/big/photo.jpg"
    s3.upload_file(
        str(source), INBOX, key, Config=TRANSFER, ExtraArgs={"ContentType": "image/jpeg"}
    )
    parts = [body[i : i + 8 * MiB] for i in range(0, len(body), 8 * MiB)]
    assert len(parts) == 3
    assert (server.bucket_dir(INBOX) / key).read_bytes() == body
    head = s3.head_object(Bucket=INBOX, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"] == multipart_etag(parts)
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "image/jpeg"
    assert "x-amz-mp-parts-count" not in head["ResponseMetadata"]["HTTPHeaders"]
    assert s3.head_object(Bucket=INBOX, Key=key, PartNumber=1)["PartsCount"] == 3
    if checksums == "when_supported":
        # boto3 asks for CRC32 on Create; S3 answers a COMPOSITE checksum.
        composite = b64(crc32(b"".join(crc32(p) for p in parts))) + "-3"
        assert head["ChecksumCRC32"] == composite
        assert head["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=INBOX, Key=key)
    assert got["Body"].read() == body
    assert temp_files(server.bucket_dir(INBOX)) == []
    assert live_uploads(server, INBOX) == set()


def test_upload_fileobj_and_download_file(
    server: RunningServer, tenant: str, tmp_path: Path
) -> None:
    """upload_fileobj (multipart) then download_file (ranged GETs) give back the same bytes."""
    s3: Any = server.client()
    body = data(BIG, seed=1)
    key = f"{tenant}/fileobj.bin"
    s3.upload_fileobj(io.BytesIO(body), LONGTERM, key, Config=TRANSFER)
    target = tmp_path / "back.bin"
    s3.download_file(LONGTERM, key, str(target), Config=TRANSFER)
    assert target.read_bytes() == body
    assert s3.head_object(Bucket=LONGTERM, Key=key)["ETag"].endswith('-3"')


# ---------------------------------------------------------------------------
# Low-level calls


def start_upload(s3: Any, key: str, bucket: str = INBOX, **kwargs: Any) -> str:
    return s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)["UploadId"]


def put_part(s3: Any, key: str, upload_id: str, number: int, body: bytes, **kw: Any) -> Any:
    return s3.upload_part(
        Bucket=kw.pop("bucket", INBOX), Key=key, UploadId=upload_id, PartNumber=number,
        Body=body, **kw,
    )


def complete(s3: Any, key: str, upload_id: str, parts: list[dict[str, Any]], **kw: Any) -> Any:
    return s3.complete_multipart_upload(
        Bucket=kw.pop("bucket", INBOX), Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": parts}, **kw,
    )


def test_create_answers_bucket_key_and_unguessable_id(server: RunningServer, tenant: str) -> None:
    """CreateMultipartUpload names bucket, key and a long random upload id."""
    s3: Any = server.client()
    key = f"{tenant}/created.bin"
    first = s3.create_multipart_upload(Bucket=INBOX, Key=key)
    second = s3.create_multipart_upload(Bucket=INBOX, Key=key)
    assert (first["Bucket"], first["Key"]) == (INBOX, key)
    assert first["UploadId"] != second["UploadId"]
    assert len(first["UploadId"]) >= 32
    assert (server.bucket_dir(INBOX) / key).exists() is False


def test_create_outside_tenant_layout_is_access_denied(server: RunningServer) -> None:
    """The tenant layout is enforced at CreateMultipartUpload, as for PutObject."""
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.create_multipart_upload(Bucket=INBOX, Key="elsewhere/file.bin")
    assert error_of(info) == (403, "AccessDenied")


def test_low_level_upload_keeps_create_headers(server: RunningServer, tenant: str) -> None:
    """Headers given at Create (type, metadata, cache control) belong to the final object."""
    s3: Any = server.client()
    key = f"{tenant}/low/level.webp"
    upload_id = start_upload(
        s3, key, ContentType="image/webp", Metadata={"plant": "7"},
        CacheControl="max-age=60", ACL="public-read", Tagging="a=b",
    )
    p1, p2 = data(5 * MiB, 2), b"tail"
    r1 = put_part(s3, key, upload_id, 1, p1)
    r2 = put_part(s3, key, upload_id, 2, p2)
    assert r1["ETag"] == '"' + hashlib.md5(p1).hexdigest() + '"'
    done = complete(s3, key, upload_id, [
        {"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]},
    ])
    assert done["ETag"] == multipart_etag([p1, p2])
    assert done["Bucket"] == INBOX and done["Key"] == key
    assert done["Location"].startswith("http")
    assert done["Location"].endswith(f"/{INBOX}/{key}")
    head = s3.head_object(Bucket=INBOX, Key=key)
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"] == {"plant": "7"}
    assert head["CacheControl"] == "max-age=60"
    assert (server.bucket_dir(INBOX) / key).read_bytes() == p1 + p2


def test_single_small_part_is_allowed(server: RunningServer, tenant: str) -> None:
    """The last (here: only) part may be smaller than 5 MiB."""
    s3: Any = server.client()
    key = f"{tenant}/one-part.txt"
    upload_id = start_upload(s3, key)
    etag = put_part(s3, key, upload_id, 1, b"tiny")["ETag"]
    done = complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": etag}])
    assert done["ETag"] == multipart_etag([b"tiny"])
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"tiny"


def test_reuploaded_part_number_replaces_the_part(server: RunningServer, tenant: str) -> None:
    """Uploading a part number again replaces it; only its latest ETag completes."""
    s3: Any = server.client()
    key = f"{tenant}/replace.bin"
    upload_id = start_upload(s3, key)
    old = put_part(s3, key, upload_id, 1, b"old bytes")["ETag"]
    new = put_part(s3, key, upload_id, 1, b"new bytes")["ETag"]
    with pytest.raises(ClientError) as info:
        complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": old}])
    assert error_of(info) == (400, "InvalidPart")
    complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": new}])
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"new bytes"
    # Parts leave with their upload at once (a rename) and are removed just after.
    assert wait_until(lambda: list(uploads_dir(server, INBOX).glob("*/part-*")) == [])


def test_full_object_crc32_is_combined_from_parts(server: RunningServer, tenant: str) -> None:
    """ChecksumType FULL_OBJECT: the object's CRC32 is that of the whole body."""
    s3: Any = server.client()
    key = f"{tenant}/full-object.bin"
    p1, p2 = data(5 * MiB, 3), data(1000, 4)
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    r1 = put_part(s3, key, upload_id, 1, p1, ChecksumAlgorithm="CRC32")
    r2 = put_part(s3, key, upload_id, 2, p2, ChecksumAlgorithm="CRC32")
    assert r1["ChecksumCRC32"] == b64(crc32(p1))
    whole = b64(crc32(p1 + p2))
    parts = [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]
    with pytest.raises(ClientError) as info:
        complete(s3, key, upload_id, parts, ChecksumCRC32=b64(crc32(b"wrong")),
                 ChecksumType="FULL_OBJECT")
    assert error_of(info) == (400, "BadDigest")
    done = complete(s3, key, upload_id, parts, ChecksumCRC32=whole, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == whole
    head = s3.head_object(Bucket=INBOX, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == whole
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_crc64nvme_defaults_to_full_object(server: RunningServer, tenant: str) -> None:
    """CRC64NVME uploads are FULL_OBJECT, computed by S3 when the parts carry none."""
    s3: Any = server.client()
    key = f"{tenant}/crc64.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC64NVME")
    p1, p2 = data(5 * MiB, 5), b"end"
    r1 = put_part(s3, key, upload_id, 1, p1)
    r2 = put_part(s3, key, upload_id, 2, p2)
    done = complete(s3, key, upload_id, [
        {"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]},
    ])
    expected = b64(crt.crc64nvme(p1 + p2).to_bytes(8, "big"))
    assert done["ChecksumCRC64NVME"] == expected


def test_composite_sha256(server: RunningServer, tenant: str) -> None:
    """COMPOSITE SHA256: sha256 of the concatenated part digests, then ``-<n>``."""
    s3: Any = server.client()
    key = f"{tenant}/sha.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="SHA256")
    p1, p2 = data(5 * MiB, 6), b"last"
    r1 = put_part(s3, key, upload_id, 1, p1, ChecksumAlgorithm="SHA256")
    r2 = put_part(s3, key, upload_id, 2, p2, ChecksumAlgorithm="SHA256")
    parts = [
        {"PartNumber": 1, "ETag": r1["ETag"], "ChecksumSHA256": r1["ChecksumSHA256"]},
        {"PartNumber": 2, "ETag": r2["ETag"], "ChecksumSHA256": r2["ChecksumSHA256"]},
    ]
    done = complete(s3, key, upload_id, parts)
    digests = hashlib.sha256(p1).digest() + hashlib.sha256(p2).digest()
    assert done["ChecksumSHA256"] == b64(hashlib.sha256(digests).digest()) + "-2"


def test_part_checksum_of_another_algorithm_is_refused(server: RunningServer, tenant: str) -> None:
    """A part may only carry the checksum algorithm chosen at Create."""
    s3: Any = server.client()
    key = f"{tenant}/mismatch.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as info:
        put_part(s3, key, upload_id, 1, b"x", ChecksumAlgorithm="SHA256")
    assert error_of(info) == (400, "InvalidRequest")


def test_wrong_part_checksum_is_bad_digest(server: RunningServer, tenant: str) -> None:
    """A part whose declared checksum does not match its bytes is refused and not stored."""
    s3: Any = server.client()
    key = f"{tenant}/bad-digest.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as info:
        put_part(s3, key, upload_id, 1, b"body", ChecksumCRC32=b64(crc32(b"other")))
    assert error_of(info) == (400, "BadDigest")
    assert s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id).get("Parts", []) == []


# ---------------------------------------------------------------------------
# Refusals: each one leaves the bucket folder as it was


@pytest.fixture
def started(server: RunningServer, tenant: str) -> tuple[Any, str, str, dict[int, str]]:
    """An upload with part 1 (5 MiB), part 2 (1 MiB) and part 3 (10 bytes) in place."""
    s3: Any = server.client()
    key = f"{tenant}/refusals.bin"
    upload_id = start_upload(s3, key)
    etags = {}
    for number, body in ((1, data(5 * MiB, 7)), (2, data(MiB, 8)), (3, b"0123456789")):
        etags[number] = put_part(s3, key, upload_id, number, body)["ETag"]
    return s3, key, upload_id, etags


def refused(
    server: RunningServer, action: Callable[[], object], status: int, code: str
) -> None:
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(ClientError) as info:
        action()
    assert error_of(info) == (status, code)
    assert snapshot(server.bucket_dir(INBOX)) == before
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_parts_out_of_order_is_invalid_part_order(server: RunningServer, started: Any) -> None:
    """Parts listed in descending order: 400 InvalidPartOrder."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": 3, "ETag": etags[3]}, {"PartNumber": 1, "ETag": etags[1]}]
    refused(server, lambda: complete(s3, key, upload_id, parts), 400, "InvalidPartOrder")


def test_duplicate_part_number_is_invalid_part_order(server: RunningServer, started: Any) -> None:
    """The same part number twice is not ascending order either."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[1]}]
    refused(server, lambda: complete(s3, key, upload_id, parts), 400, "InvalidPartOrder")


def test_unknown_part_is_invalid_part(server: RunningServer, started: Any) -> None:
    """A part number never uploaded: 400 InvalidPart."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 9, "ETag": etags[3]}]
    refused(server, lambda: complete(s3, key, upload_id, parts), 400, "InvalidPart")


def test_wrong_etag_is_invalid_part(server: RunningServer, started: Any) -> None:
    """A part whose ETag does not match what was stored: 400 InvalidPart."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 3, "ETag": etags[2]}]
    refused(server, lambda: complete(s3, key, upload_id, parts), 400, "InvalidPart")


def test_small_part_before_the_last_is_entity_too_small(
    server: RunningServer, started: Any
) -> None:
    """Every part but the last must be at least 5 MiB: 400 EntityTooSmall."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]
    refused(server, lambda: complete(s3, key, upload_id, parts), 400, "EntityTooSmall")
    # The upload is untouched by the refusals and still completes with valid parts.
    ok = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 3, "ETag": etags[3]}]
    complete(s3, key, upload_id, ok)
    assert (server.bucket_dir(INBOX) / key).stat().st_size == 5 * MiB + 10


@pytest.mark.parametrize("number", [0, 10001, 99999])
def test_bad_part_number_is_invalid_argument(
    server: RunningServer, started: Any, number: int
) -> None:
    """Part numbers outside 1..10000: 400 InvalidArgument."""
    s3, key, upload_id, _ = started
    refused(server, lambda: put_part(s3, key, upload_id, number, b"x"), 400, "InvalidArgument")


@pytest.mark.parametrize(
    "call",
    ["upload_part", "complete", "abort", "list_parts"],
)
def test_unknown_upload_id_is_no_such_upload(
    server: RunningServer, tenant: str, call: str
) -> None:
    """An upload id that does not exist (or is malformed): 404 NoSuchUpload."""
    s3: Any = server.client()
    key = f"{tenant}/nothing.bin"
    for upload_id in ("A" * 64, "../../etc"):
        actions: dict[str, Callable[[], object]] = {
            "upload_part": lambda u=upload_id: put_part(s3, key, u, 1, b"x"),
            "complete": lambda u=upload_id: complete(
                s3, key, u, [{"PartNumber": 1, "ETag": '"x"'}]
            ),
            "abort": lambda u=upload_id: s3.abort_multipart_upload(
                Bucket=INBOX, Key=key, UploadId=u
            ),
            "list_parts": lambda u=upload_id: s3.list_parts(Bucket=INBOX, Key=key, UploadId=u),
        }
        refused(server, actions[call], 404, "NoSuchUpload")


def test_upload_id_of_another_key_is_no_such_upload(server: RunningServer, started: Any) -> None:
    """An upload id is bound to its key."""
    s3, key, upload_id, _ = started
    other = key.rsplit("/", 1)[0] + "/other.bin"
    refused(server, lambda: put_part(s3, other, upload_id, 1, b"x"), 404, "NoSuchUpload")


def test_if_none_match_on_existing_key_is_412(server: RunningServer, started: Any) -> None:
    """CompleteMultipartUpload with If-None-Match: * on an existing key: 412, upload kept."""
    s3, key, upload_id, etags = started
    s3.put_object(Bucket=INBOX, Key=key, Body=b"already here")
    parts = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 3, "ETag": etags[3]}]
    refused(
        server, lambda: complete(s3, key, upload_id, parts, IfNoneMatch="*"),
        412, "PreconditionFailed",
    )
    assert (server.bucket_dir(INBOX) / key).read_bytes() == b"already here"
    assert len(s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id)["Parts"]) == 3


def test_if_none_match_on_new_key_completes(server: RunningServer, started: Any) -> None:
    """If-None-Match: * on a free key lets the upload complete."""
    s3, key, upload_id, etags = started
    parts = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 3, "ETag": etags[3]}]
    assert complete(s3, key, upload_id, parts, IfNoneMatch="*")["ETag"].endswith('-2"')


# ---------------------------------------------------------------------------
# Malformed CompleteMultipartUpload documents (raw, botocore-signed requests)


def signed_post(server: RunningServer, path: str, body: bytes) -> tuple[int, bytes]:
    request = AWSRequest(method="POST", url=f"{server.url}{path}", data=body)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers=dict(prepared.headers.items()))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&b;</ETag></Part>"
    b"</CompleteMultipartUpload>"
)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
        b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part>"
        b"</CompleteMultipartUpload>",
        BILLION_LAUGHS,
    ],
    ids=["empty", "not-xml", "no-parts", "wrong-root", "bad-number", "entities"],
)
def test_malformed_complete_document_is_malformed_xml(
    server: RunningServer, started: Any, body: bytes
) -> None:
    """Documents that are not a valid part list (or use DTD entities): 400 MalformedXML."""
    _, key, upload_id, _ = started
    before = snapshot(server.bucket_dir(INBOX))
    status, response = signed_post(server, f"/{INBOX}/{key}?uploadId={upload_id}", body)
    assert (status, b"<Code>MalformedXML</Code>" in response) == (400, True), response
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_oversized_complete_document_is_refused(server: RunningServer, started: Any) -> None:
    """The part list is read with a bound: a huge document is refused, not buffered."""
    _, key, upload_id, _ = started
    part = b"<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
    parts = part * (5 * MiB // len(part))
    body = b"<CompleteMultipartUpload>" + parts + b"</CompleteMultipartUpload>"
    status, response = signed_post(server, f"/{INBOX}/{key}?uploadId={upload_id}", body)
    assert status == 400
    assert b"<Code>MaxMessageLengthExceeded</Code>" in response


# ---------------------------------------------------------------------------
# Abort, ListParts, ListMultipartUploads


def test_abort_removes_upload_and_parts(server: RunningServer, tenant: str) -> None:
    """Abort answers 204 and the parts are gone; the upload id is then unknown."""
    s3: Any = server.client()
    key = f"{tenant}/aborted.bin"
    upload_id = start_upload(s3, key)
    put_part(s3, key, upload_id, 1, b"bytes")
    assert upload_id in live_uploads(server, INBOX)
    response = s3.abort_multipart_upload(Bucket=INBOX, Key=key, UploadId=upload_id)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not (uploads_dir(server, INBOX) / upload_id).exists()
    with pytest.raises(ClientError) as info:
        put_part(s3, key, upload_id, 2, b"late")
    assert error_of(info) == (404, "NoSuchUpload")
    assert not (server.bucket_dir(INBOX) / key).exists()


def test_list_parts_pages(server: RunningServer, tenant: str) -> None:
    """ListParts returns part number, size and ETag in order, max-parts at a time."""
    s3: Any = server.client()
    key = f"{tenant}/listed.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC32")
    bodies = {n: f"part {n}".encode() * n for n in (3, 1, 2)}
    for number, body in bodies.items():
        put_part(s3, key, upload_id, number, body)
    first = s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 2
    assert first["ChecksumAlgorithm"] == "CRC32"
    rest = s3.list_parts(
        Bucket=INBOX, Key=key, UploadId=upload_id, PartNumberMarker=first["NextPartNumberMarker"]
    )
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert rest["IsTruncated"] is False
    for part in first["Parts"] + rest["Parts"]:
        body = bodies[part["PartNumber"]]
        assert part["Size"] == len(body)
        assert part["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
        assert part["ChecksumCRC32"] == b64(crc32(body))


def test_list_multipart_uploads(server: RunningServer, tenant: str) -> None:
    """Uploads in progress are listed by key under a prefix, paged with markers."""
    s3: Any = server.client()
    ids = {}
    for name in ("b.bin", "a.bin", "c/d.bin"):
        ids[name] = start_upload(s3, f"{tenant}/{name}", bucket=LONGTERM)
    listed = s3.list_multipart_uploads(Bucket=LONGTERM, Prefix=f"{tenant}/")
    assert [u["Key"] for u in listed["Uploads"]] == [
        f"{tenant}/a.bin", f"{tenant}/b.bin", f"{tenant}/c/d.bin",
    ]
    assert listed["Uploads"][0]["UploadId"] == ids["a.bin"]
    assert listed["IsTruncated"] is False

    page = s3.list_multipart_uploads(Bucket=LONGTERM, Prefix=f"{tenant}/", MaxUploads=1)
    assert page["IsTruncated"] is True
    assert [u["Key"] for u in page["Uploads"]] == [f"{tenant}/a.bin"]
    following = s3.list_multipart_uploads(
        Bucket=LONGTERM, Prefix=f"{tenant}/", KeyMarker=page["NextKeyMarker"],
        UploadIdMarker=page["NextUploadIdMarker"],
    )
    assert [u["Key"] for u in following["Uploads"]] == [f"{tenant}/b.bin", f"{tenant}/c/d.bin"]

    grouped = s3.list_multipart_uploads(Bucket=LONGTERM, Prefix=f"{tenant}/", Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == [f"{tenant}/a.bin", f"{tenant}/b.bin"]
    assert grouped["CommonPrefixes"] == [{"Prefix": f"{tenant}/c/"}]

    s3.abort_multipart_upload(Bucket=LONGTERM, Key=f"{tenant}/a.bin", UploadId=ids["a.bin"])
    after = s3.list_multipart_uploads(Bucket=LONGTERM, Prefix=f"{tenant}/")
    assert [u["Key"] for u in after["Uploads"]] == [f"{tenant}/b.bin", f"{tenant}/c/d.bin"]


def test_uploads_are_not_objects(server: RunningServer, tenant: str) -> None:
    """Parts live outside the key space: GetObject of the key is NoSuchKey until completion."""
    s3: Any = server.client()
    key = f"{tenant}/pending.bin"
    upload_id = start_upload(s3, key)
    put_part(s3, key, upload_id, 1, b"pending")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=key)
    assert error_of(info) == (404, "NoSuchKey")
    assert not any(tenant in path for path in snapshot(server.bucket_dir(INBOX)))


# ---------------------------------------------------------------------------
# UploadPartCopy


def test_upload_part_copy_ranges(server: RunningServer, tenant: str) -> None:
    """Parts copied from ranges of a stored object (across buckets) rebuild it exactly."""
    s3: Any = server.client()
    source_key = f"{tenant}/source.bin"
    body = data(6 * MiB, 9)
    s3.put_object(Bucket=INBOX, Key=source_key, Body=body)
    key = f"{tenant}/copied.bin"
    upload_id = start_upload(s3, key, bucket=LONGTERM)
    split = 5 * MiB
    parts = []
    for number, (first, last) in enumerate([(0, split - 1), (split, len(body) - 1)], start=1):
        result = s3.upload_part_copy(
            Bucket=LONGTERM, Key=key, UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": INBOX, "Key": source_key},
            CopySourceRange=f"bytes={first}-{last}",
        )
        assert result["CopyPartResult"]["ETag"] == (
            '"' + hashlib.md5(body[first : last + 1]).hexdigest() + '"'
        )
        parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
    complete(s3, key, upload_id, parts, bucket=LONGTERM)
    assert (server.bucket_dir(LONGTERM) / key).read_bytes() == body


def test_upload_part_copy_whole_object(server: RunningServer, tenant: str) -> None:
    """Without a range the whole source becomes the part."""
    s3: Any = server.client()
    source_key = f"{tenant}/small source.txt"
    s3.put_object(Bucket=INBOX, Key=source_key, Body=b"whole")
    key = f"{tenant}/whole.txt"
    upload_id = start_upload(s3, key)
    result = s3.upload_part_copy(
        Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1,
        CopySource=f"{INBOX}/{source_key}",
    )
    complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": result["CopyPartResult"]["ETag"]}])
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"whole"


@pytest.mark.parametrize(
    ("source", "range_", "status", "code"),
    [
        ("missing", None, 404, "NoSuchKey"),
        ("present", "bytes=0-999", 400, "InvalidArgument"),
        ("present", "bytes=3-1", 400, "InvalidArgument"),
        ("present", "0-1", 400, "InvalidArgument"),
        ("present", "bytes=-2", 400, "InvalidArgument"),
    ],
)
def test_upload_part_copy_refusals(
    server: RunningServer, tenant: str, source: str, range_: str | None, status: int, code: str
) -> None:
    """A missing source or a bad range is refused as S3 refuses it."""
    s3: Any = server.client()
    source_key = f"{tenant}/{source}.txt"
    if source == "present":
        s3.put_object(Bucket=INBOX, Key=source_key, Body=b"short")
    key = f"{tenant}/target.txt"
    upload_id = start_upload(s3, key)
    kwargs = {"CopySourceRange": range_} if range_ else {}
    refused(
        server,
        lambda: s3.upload_part_copy(
            Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1,
            CopySource={"Bucket": INBOX, "Key": source_key}, **kwargs,
        ),
        status, code,
    )


def test_upload_part_copy_precondition(server: RunningServer, tenant: str) -> None:
    """x-amz-copy-source-if-match that does not hold: 412."""
    s3: Any = server.client()
    source_key = f"{tenant}/cond.txt"
    s3.put_object(Bucket=INBOX, Key=source_key, Body=b"cond")
    key = f"{tenant}/cond-target.txt"
    upload_id = start_upload(s3, key)
    refused(
        server,
        lambda: s3.upload_part_copy(
            Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1,
            CopySource={"Bucket": INBOX, "Key": source_key}, CopySourceIfMatch='"nope"',
        ),
        412, "PreconditionFailed",
    )


# ---------------------------------------------------------------------------
# aws-chunked parts (hand-framed, as the SDKs send them over TLS)


def test_aws_chunked_part_with_trailer(server: RunningServer, tenant: str) -> None:
    """An UploadPart in STREAMING-UNSIGNED-PAYLOAD-TRAILER mode stores the decoded bytes."""
    from test_s3_payload_modes import UNSIGNED_TRAILER, crc32_b64, frame, seed_request, send

    s3: Any = server.client()
    key = f"{tenant}/chunked.bin"
    upload_id = start_upload(s3, key, ChecksumAlgorithm="CRC32")
    body = data(200 * 1024, 10)
    query = f"partNumber=1&uploadId={upload_id}"
    upload = seed_request(
        server, f"{key}?{query}", mode=UNSIGNED_TRAILER, decoded_length=len(body),
        headers={"x-amz-trailer": "x-amz-checksum-crc32"},
    )
    upload.target = f"{upload.target}?{query}"
    wire = frame(body, mode=UNSIGNED_TRAILER, seed=upload.seed,
                 trailer=("x-amz-checksum-crc32", crc32_b64(body)))
    status, headers, response = send(server, upload, wire)
    assert status == 200, response
    assert headers["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    assert headers["x-amz-checksum-crc32"] == crc32_b64(body)
    done = complete(s3, key, upload_id, [
        {"PartNumber": 1, "ETag": headers["ETag"], "ChecksumCRC32": crc32_b64(body)},
    ])
    assert done["ETag"] == multipart_etag([body])
    assert (server.bucket_dir(INBOX) / key).read_bytes() == body


# ---------------------------------------------------------------------------
# Concurrency and restarts


def test_concurrent_uploads_of_one_part_number(server: RunningServer, tenant: str) -> None:
    """Racing UploadParts of the same number: one complete part wins, never a mix."""
    s3: Any = server.client()
    key = f"{tenant}/race.bin"
    upload_id = start_upload(s3, key)
    bodies = [data(2 * MiB, 20 + i) for i in range(4)]
    errors: list[BaseException] = []

    def send_part(body: bytes) -> None:
        try:
            server.client().upload_part(
                Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1, Body=body
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send_part, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [part] = s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id)["Parts"]
    complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": part["ETag"]}])
    stored = (server.bucket_dir(INBOX) / key).read_bytes()
    assert stored in bodies
    assert part["ETag"] == '"' + hashlib.md5(stored).hexdigest() + '"'
    assert list(uploads_dir(server, INBOX).glob(f"{upload_id}*")) == []


def test_upload_survives_restart(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """An upload left unfinished is still listed, extended and completed after a restart."""
    data_dir = tmp_path / "shared-data"
    first = start_server(data_dir=data_dir)
    s3: Any = first.client()
    key = "company_1/plant_1/restart.bin"
    upload_id = start_upload(s3, key)
    p1 = data(5 * MiB, 30)
    e1 = put_part(s3, key, upload_id, 1, p1)["ETag"]
    abandoned = start_upload(s3, "company_1/plant_1/abandoned.bin")
    first.stop()

    second = start_server(data_dir=data_dir)
    s3 = second.client()
    listed = s3.list_multipart_uploads(Bucket=INBOX)
    assert {u["UploadId"] for u in listed["Uploads"]} == {upload_id, abandoned}
    parts = s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id)["Parts"]
    assert [p["ETag"] for p in parts] == [e1]
    e2 = put_part(s3, key, upload_id, 2, b"after restart")["ETag"]
    complete(s3, key, upload_id, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}])
    assert (second.bucket_dir(INBOX) / key).read_bytes() == p1 + b"after restart"
    s3.abort_multipart_upload(
        Bucket=INBOX, Key="company_1/plant_1/abandoned.bin", UploadId=abandoned
    )
    assert s3.list_multipart_uploads(Bucket=INBOX).get("Uploads", []) == []
    assert wait_until(lambda: os.listdir(uploads_dir(second, INBOX)) == [])


# ---------------------------------------------------------------------------
# Keep-alive white space while a long CompleteMultipartUpload assembles (pure)


def keepalive_call() -> tuple[Any, Any]:
    from twisted.web.test.requesthelper import DummyRequest

    from plantcdn.call import S3Call
    from plantcdn.routing import Target
    from plantcdn.sigv4 import RequestParts

    request = DummyRequest([b""])
    request.setHeader(b"x-amz-id-2", b"host-id")
    call = S3Call(
        request=request,
        target=Target(INBOX, "company_1/plant_1/k", False),
        operation="CompleteMultipartUpload",
        headers={},
        query={},
        parts=RequestParts("POST", "/", (), {}),
        request_id="REQ",
        now=0.0,
    )
    return call, request


def test_keepalive_is_silent_for_a_quick_completion() -> None:
    """A completion that ends before the first interval sends nothing early."""
    from twisted.internet.task import Clock

    from plantcdn.multipart import KeepAlive

    call, request = keepalive_call()
    clock = Clock()
    keepalive = KeepAlive(call, clock, every=5)
    clock.advance(4)
    assert keepalive.finish(b"<doc/>") == b"<doc/>"
    clock.advance(10)
    assert request.written == []
    assert clock.getDelayedCalls() == []


def test_keepalive_sends_200_and_white_space_then_the_result() -> None:
    """After each interval one space goes out; declaration + spaces + result is one document."""
    from xml.etree.ElementTree import fromstring

    from twisted.internet.task import Clock

    from plantcdn.multipart import KeepAlive
    from plantcdn.xmlbody import render

    call, request = keepalive_call()
    clock = Clock()
    keepalive = KeepAlive(call, clock, every=5)
    clock.advance(5)
    clock.advance(5)
    assert request.responseCode == 200
    sent = b"".join(request.written)
    assert sent == b'<?xml version="1.0" encoding="UTF-8"?>\n  '
    rest = keepalive.finish(render("CompleteMultipartUploadResult", [("Key", "k")]))
    assert fromstring(sent + rest).tag.endswith("CompleteMultipartUploadResult")
    assert clock.getDelayedCalls() == []


def test_keepalive_error_after_start_is_an_error_document() -> None:
    """A failure after the 200 went out is an <Error> body, as S3 sends it."""
    from xml.etree.ElementTree import fromstring

    from twisted.internet.task import Clock

    from plantcdn.errors import S3Error
    from plantcdn.multipart import KeepAlive

    call, request = keepalive_call()
    clock = Clock()
    keepalive = KeepAlive(call, clock, every=5)
    clock.advance(5)
    rest = keepalive.finish_with_error(S3Error("PreconditionFailed"))
    root = fromstring(b"".join(request.written) + rest)
    assert root.tag == "Error"
    assert root.findtext("Code") == "PreconditionFailed"
    assert root.findtext("HostId") == "host-id"
