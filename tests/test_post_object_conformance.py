"""POST Object form fields held to what AWS documents, against the real daemon.

Each test posts a boto3-presigned form (every field covered by an ``eq``
condition) and checks what a browser or a later GetObject sees: status, S3
error ``Code``, response headers, stored bytes, and that a refusal leaves the
bucket unchanged.  Pages followed: API Reference "POST Object" (form fields,
responses), PutObject, PutObjectTagging.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, RunningServer
from test_post_object import (
    PHOTO,
    Body,
    Field,
    inbox,
    post,
    presign,
    refused,
)

__all__ = ["inbox"]  # the fixture, imported for pytest

SHA256 = base64.b64encode(hashlib.sha256(PHOTO).digest()).decode()
CRC32 = base64.b64encode(zlib.crc32(PHOTO).to_bytes(4, "big")).decode()
MD5 = base64.b64encode(hashlib.md5(PHOTO).digest()).decode()


def signed(server: RunningServer, key: str, fields: dict[str, str]) -> list[Field]:
    """A form whose policy allows exactly *fields* (each as an eq condition)."""
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    return presign(server, key, fields=fields, conditions=conditions)


def tagging_xml(*tags: tuple[str, str]) -> str:
    inner = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in tags)
    return f"<Tagging><TagSet>{inner}</TagSet></Tagging>"


def s3(server: RunningServer) -> Any:
    return server.client()


# ---------------------------------------------------------------------------
# 1. Content-MD5


def test_matching_content_md5_is_stored(server: RunningServer, tenant: str) -> None:
    """A Content-MD5 field that matches the file: 204 and the file is stored."""
    answer = post(server, Body(signed(server, f"{tenant}/md5.png", {"Content-MD5": MD5})))
    assert answer.status == 204, answer
    assert (server.bucket_dir(INBOX) / tenant / "md5.png").read_bytes() == PHOTO


def test_content_md5_mismatch_is_bad_digest(
    server: RunningServer, tenant: str, inbox: dict[str, bytes]
) -> None:
    """A Content-MD5 field of other bytes: 400 BadDigest, nothing stored."""
    other = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    form = signed(server, f"{tenant}/md5bad.png", {"Content-MD5": other})
    refused(server, inbox, Body(form), 400, "BadDigest")


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_content_md5_is_invalid_digest(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], value: str
) -> None:
    """A Content-MD5 field that is not a base64 MD5: 400 InvalidDigest, nothing stored."""
    form = signed(server, f"{tenant}/md5odd.png", {"Content-MD5": value})
    refused(server, inbox, Body(form), 400, "InvalidDigest")


# ---------------------------------------------------------------------------
# 4. x-amz-checksum-algorithm


def test_checksum_algorithm_with_its_value_is_accepted(server: RunningServer, tenant: str) -> None:
    """x-amz-checksum-algorithm with the matching value: stored with that checksum."""
    form = signed(
        server,
        f"{tenant}/alg.png",
        {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": SHA256},
    )
    answer = post(server, Body(form))
    assert answer.status == 204, answer
    head = s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/alg.png", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == SHA256


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"x-amz-checksum-algorithm": "SHA256"}, "InvalidRequest"),
        ({"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-sha256": SHA256}, "BadDigest"),
        ({"x-amz-checksum-algorithm": "MD4"}, "InvalidRequest"),
    ],
    ids=["no-value", "other-algorithm", "unknown-algorithm"],
)
def test_checksum_algorithm_without_its_value_is_refused(
    server: RunningServer,
    tenant: str,
    inbox: dict[str, bytes],
    fields: dict[str, str],
    code: str,
) -> None:
    """x-amz-checksum-algorithm without that algorithm's value: 400, nothing stored."""
    refused(server, inbox, Body(signed(server, f"{tenant}/noalg.png", fields)), 400, code)


# ---------------------------------------------------------------------------
# 5. x-amz-storage-class


def test_invalid_storage_class_is_refused_as_put_object_refuses_it(
    server: RunningServer, tenant: str, inbox: dict[str, bytes]
) -> None:
    """An unknown x-amz-storage-class field: 400 InvalidStorageClass, as PutObject answers."""
    with pytest.raises(ClientError) as caught:
        s3(server).put_object(Bucket=INBOX, Key=f"{tenant}/sc.png", Body=b"x", StorageClass="FAST")
    put_error = caught.value.response["Error"]
    form = signed(server, f"{tenant}/sc.png", {"x-amz-storage-class": "FAST"})
    error = refused(server, inbox, Body(form), 400, "InvalidStorageClass")
    assert (error["Code"], error["Message"]) == (put_error["Code"], put_error["Message"])
    assert error["StorageClassRequested"] == "FAST"


def test_valid_storage_class_is_stored(server: RunningServer, tenant: str) -> None:
    """A known x-amz-storage-class field is stored and reported by HeadObject."""
    form = signed(server, f"{tenant}/ia.png", {"x-amz-storage-class": "STANDARD_IA"})
    assert post(server, Body(form)).status == 204
    assert s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/ia.png")["StorageClass"] == (
        "STANDARD_IA"
    )
