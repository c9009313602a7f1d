"""GetObjectAttributes against the real daemon, driven by boto3 (and a few raw requests).

AWS pages followed (Amazon S3 API Reference): GetObjectAttributes,
GetObjectAttributesParts, Checksum; (User Guide) "Checking object integrity".
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, REGION, RunningServer

from plantcdn.errors import S3Error
from plantcdn.routing import Target, operation_for
from plantcdn.scopes import category_for

MiB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    """What boto3 parsed, without the metadata and the Last-Modified header."""
    return {k: v for k, v in response.items() if k not in ("ResponseMetadata", "LastModified")}


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def signed_get(
    server: RunningServer, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """A SigV4-signed GET with exactly *headers* (boto3 always sends the attributes header)."""
    request = AWSRequest(method="GET", url=f"{server.url}{path}", headers=headers)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("GET", path, headers=dict(prepared.headers.items()))
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Pure: routing and scope


def test_get_with_attributes_on_a_key_is_get_object_attributes() -> None:
    """``GET /bucket/key?attributes`` routes to GetObjectAttributes."""
    target = Target("b", "k", False)
    assert operation_for("GET", target, {"attributes": ""}, {}) == "GetObjectAttributes"


@pytest.mark.parametrize(("method", "key"), [("HEAD", "k"), ("PUT", "k"), ("GET", None)])
def test_other_uses_of_attributes_stay_not_implemented(method: str, key: str | None) -> None:
    """Only GET on an object answers ``?attributes``; the rest stays 501."""
    with pytest.raises(S3Error) as info:
        operation_for(method, Target("b", key, False), {"attributes": ""}, {})
    assert (info.value.status, info.value.code) == (501, "NotImplemented")


def test_get_object_attributes_is_a_read_for_scoped_keys() -> None:
    """Scoped keys need the "read" category, as for HeadObject."""
    assert category_for("GetObjectAttributes") == category_for("HeadObject") == "read"


# ---------------------------------------------------------------------------
# Objects stored with PutObject


def test_plain_object_answers_every_requested_attribute(server: RunningServer, tenant: str) -> None:
    """ETag without quotes, size and STANDARD; no Checksum or ObjectParts for a plain PUT."""
    s3: Any = server.client()
    key = f"{tenant}/plain.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"hello attributes")
    got = s3.get_object_attributes(Bucket=INBOX, Key=key, ObjectAttributes=ALL)
    assert body_of(got) == {
        "ETag": hashlib.md5(b"hello attributes").hexdigest(),
        "StorageClass": "STANDARD",
        "ObjectSize": 16,
    }
    assert got["LastModified"] == s3.head_object(Bucket=INBOX, Key=key)["LastModified"]
    assert got["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/xml"


def test_only_the_requested_attributes_are_sent(server: RunningServer, tenant: str) -> None:
    """Attributes not named in x-amz-object-attributes are left out."""
    s3: Any = server.client()
    key = f"{tenant}/only-size.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"12345")
    got = s3.get_object_attributes(Bucket=INBOX, Key=key, ObjectAttributes=["ObjectSize"])
    assert body_of(got) == {"ObjectSize": 5}


def test_checksum_and_storage_class_come_from_the_upload(
    server: RunningServer, tenant: str
) -> None:
    """A PUT with ChecksumAlgorithm reads back its checksum (FULL_OBJECT) and storage class."""
    s3: Any = server.client()
    key = f"{tenant}/summed.bin"
    payload = b"checksummed bytes"
    s3.put_object(
        Bucket=INBOX,
        Key=key,
        Body=payload,
        ChecksumAlgorithm="SHA256",
        StorageClass="STANDARD_IA",
    )
    got = s3.get_object_attributes(Bucket=INBOX, Key=key, ObjectAttributes=ALL)
    assert body_of(got) == {
        "ETag": hashlib.md5(payload).hexdigest(),
        "Checksum": {
            "ChecksumSHA256": b64(hashlib.sha256(payload).digest()),
            "ChecksumType": "FULL_OBJECT",
        },
        "StorageClass": "STANDARD_IA",
        "ObjectSize": len(payload),
    }


# ---------------------------------------------------------------------------
# Multipart objects


def test_multipart_object_reports_its_part_count(server: RunningServer, tenant: str) -> None:
    """A multipart object has ObjectParts.TotalPartsCount; without checksums, nothing more."""
    s3: Any = server.client()
    key = f"{tenant}/one-part.bin"
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1, Body=b"tiny")[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=INBOX,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    got = s3.get_object_attributes(Bucket=INBOX, Key=key, ObjectAttributes=ALL)
    md5_of_md5s = hashlib.md5(hashlib.md5(b"tiny").digest()).hexdigest()
    assert body_of(got) == {
        "ETag": f"{md5_of_md5s}-1",
        "ObjectParts": {"TotalPartsCount": 1},
        "StorageClass": "STANDARD",
        "ObjectSize": 4,
    }


def test_composite_checksum_is_sent_without_its_part_count(
    server: RunningServer, tenant: str
) -> None:
    """COMPOSITE SHA256 of two parts: the digest without ``-2``, and TotalPartsCount 2."""
    s3: Any = server.client()
    key = f"{tenant}/composite.bin"
    p1, p2 = bytes(range(256)) * (5 * MiB // 256), b"last part"
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key, ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    parts = []
    for number, body in ((1, p1), (2, p2)):
        done = s3.upload_part(
            Bucket=INBOX,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": done["ETag"], "ChecksumSHA256": done["ChecksumSHA256"]}
        )
    completed = s3.complete_multipart_upload(
        Bucket=INBOX, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    composite = b64(
        hashlib.sha256(hashlib.sha256(p1).digest() + hashlib.sha256(p2).digest()).digest()
    )
    assert completed["ChecksumSHA256"] == composite + "-2"
    got = s3.get_object_attributes(
        Bucket=INBOX, Key=key, ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"]
    )
    assert body_of(got) == {
        "Checksum": {"ChecksumSHA256": composite, "ChecksumType": "COMPOSITE"},
        "ObjectParts": {"TotalPartsCount": 2},
        "ObjectSize": len(p1) + len(p2),
    }


# ---------------------------------------------------------------------------
# Refusals


def test_missing_key_is_no_such_key(server: RunningServer, tenant: str) -> None:
    """A key that does not exist is 404 NoSuchKey."""
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=INBOX, Key=f"{tenant}/absent", ObjectAttributes=ALL)
    assert error_of(info) == (404, "NoSuchKey")


def test_unknown_attribute_name_is_invalid_argument(server: RunningServer, tenant: str) -> None:
    """An attribute outside the enum is 400 InvalidArgument naming the header and the value."""
    s3: Any = server.client()
    key = f"{tenant}/bad-name.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=INBOX, Key=key, ObjectAttributes=["ETag", "ETags"])
    assert error_of(info) == (400, "InvalidArgument")
    error: Any = info.value.response["Error"]
    assert error["Message"] == "Invalid attribute name specified."
    assert (error["ArgumentName"], error["ArgumentValue"]) == ("x-amz-object-attributes", "ETags")


@pytest.mark.parametrize("headers", [{}, {"x-amz-object-attributes": ""}])
def test_missing_or_empty_header_is_invalid_request(
    server: RunningServer, tenant: str, headers: dict[str, str]
) -> None:
    """No attribute named: 400 InvalidRequest, with S3's message."""
    s3: Any = server.client()
    key = f"{tenant}/no-header.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    status, _, body = signed_get(server, f"/{INBOX}/{key}?attributes", headers)
    assert status == 400
    assert b"<Code>InvalidRequest</Code>" in body
    assert b"is either missing or empty" in body


def test_version_id_other_than_null_is_invalid_argument(server: RunningServer, tenant: str) -> None:
    """The bucket is unversioned: ``null`` answers, any other version id is 400."""
    s3: Any = server.client()
    key = f"{tenant}/versioned.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"abc")
    got = s3.get_object_attributes(
        Bucket=INBOX, Key=key, VersionId="null", ObjectAttributes=["ObjectSize"]
    )
    assert got["ObjectSize"] == 3
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(
            Bucket=INBOX, Key=key, VersionId="3HL4kqtJlcpXroDTDmJ", ObjectAttributes=["ETag"]
        )
    assert error_of(info) == (400, "InvalidArgument")


def test_conditional_headers_apply_as_for_head_object(server: RunningServer, tenant: str) -> None:
    """If-None-Match on the current ETag is 304; If-Match on another ETag is 412."""
    s3: Any = server.client()
    key = f"{tenant}/conditional.txt"
    etag = s3.put_object(Bucket=INBOX, Key=key, Body=b"cond")["ETag"]
    path = f"/{INBOX}/{key}?attributes"
    wanted = {"x-amz-object-attributes": "ETag"}
    status, headers, body = signed_get(server, path, {**wanted, "If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == etag
    status, _, body = signed_get(server, path, {**wanted, "If-Match": '"0000"'})
    assert status == 412
    assert b"<Code>PreconditionFailed</Code>" in body


def test_scoped_key_may_read_attributes_only_inside_its_prefix(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """A read-scoped key gets attributes inside its prefix and AccessDenied outside."""
    creds = tmp_path / "credentials.json"
    creds.write_text(
        json.dumps(
            [
                {
                    "access_key_id": "PLANT9READER",
                    "secret_access_key": "reader-secret-for-attributes-0123456",
                    "prefixes": ["company_9/"],
                    "operations": ["read"],
                }
            ]
        )
    )
    running = start_server(PLANTCDN_CREDENTIALS_FILE=str(creds))
    main: Any = running.client()
    main.put_object(Bucket=INBOX, Key="company_9/plant_1/a.txt", Body=b"mine")
    main.put_object(Bucket=INBOX, Key="company_8/plant_1/b.txt", Body=b"theirs")
    reader: Any = running.client(
        access_key="PLANT9READER", secret_key="reader-secret-for-attributes-0123456"
    )
    got = reader.get_object_attributes(
        Bucket=INBOX, Key="company_9/plant_1/a.txt", ObjectAttributes=["ObjectSize"]
    )
    assert got["ObjectSize"] == 4
    with pytest.raises(ClientError) as info:
        reader.get_object_attributes(
            Bucket=INBOX, Key="company_8/plant_1/b.txt", ObjectAttributes=["ObjectSize"]
        )
    assert error_of(info) == (403, "AccessDenied")
