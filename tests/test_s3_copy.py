"""CopyObject against the real daemon, driven by boto3."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, RunningServer, snapshot, temp_files

BODY = b"copy me \x00\xff" * 5000


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def put_source(s3: Any, key: str, **extra: Any) -> str:
    return s3.put_object(
        Bucket=INBOX,
        Key=key,
        Body=BODY,
        ContentType="image/jpeg",
        CacheControl="max-age=60",
        Metadata={"camera": "x100"},
        Tagging="stage=raw",
        **extra,
    )["ETag"]


def test_copy_across_buckets_keeps_bytes_and_metadata(server: RunningServer, tenant: str) -> None:
    """The default COPY directive copies bytes, headers, user metadata and tags."""
    s3: Any = server.client()
    src, dst = f"{tenant}/raw/a.jpg", f"{tenant}/orig/a.jpg"
    etag = put_source(s3, src)
    result = s3.copy_object(Bucket=LONGTERM, Key=dst, CopySource={"Bucket": INBOX, "Key": src})
    assert result["CopyObjectResult"]["ETag"] == etag == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert isinstance(result["CopyObjectResult"]["LastModified"], datetime)
    assert (server.bucket_dir(LONGTERM) / dst).read_bytes() == BODY
    head = s3.head_object(Bucket=LONGTERM, Key=dst)
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"camera": "x100"}
    assert s3.get_object_tagging(Bucket=LONGTERM, Key=dst)["TagSet"] == [
        {"Key": "stage", "Value": "raw"}
    ]
    assert (server.bucket_dir(INBOX) / src).read_bytes() == BODY
    assert temp_files(server.bucket_dir(LONGTERM)) == []


def test_copy_replace_directive_takes_request_headers(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    src = f"{tenant}/r.jpg"
    put_source(s3, src)
    s3.copy_object(
        Bucket=INBOX,
        Key=f"{tenant}/r2.jpg",
        CopySource=f"{INBOX}/{src}",
        MetadataDirective="REPLACE",
        ContentType="image/webp",
        Metadata={"new": "1"},
        TaggingDirective="REPLACE",
        Tagging="stage=done",
    )
    head = s3.head_object(Bucket=INBOX, Key=f"{tenant}/r2.jpg")
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"] == {"new": "1"}
    assert "CacheControl" not in head
    tags = s3.get_object_tagging(Bucket=INBOX, Key=f"{tenant}/r2.jpg")["TagSet"]
    assert tags == [{"Key": "stage", "Value": "done"}]


def test_copy_source_with_special_characters(server: RunningServer, tenant: str) -> None:
    """URL-encoded source keys (spaces, '+', UTF-8, '?') and a leading slash are understood."""
    s3: Any = server.client()
    src = f"{tenant}/a b+c é?d.jpg"
    put_source(s3, src)
    s3.copy_object(
        Bucket=LONGTERM, Key=f"{tenant}/copy.jpg", CopySource={"Bucket": INBOX, "Key": src}
    )
    assert (server.bucket_dir(LONGTERM) / tenant / "copy.jpg").read_bytes() == BODY
    # The string form: botocore URL-encodes it; a leading slash and versionId=null are fine.
    s3.copy_object(
        Bucket=LONGTERM, Key=f"{tenant}/copy2.jpg", CopySource=f"/{INBOX}/{src}?versionId=null"
    )
    assert (server.bucket_dir(LONGTERM) / tenant / "copy2.jpg").read_bytes() == BODY


def test_copy_onto_itself_with_replace(server: RunningServer, tenant: str) -> None:
    """Copying onto itself is allowed when the metadata is replaced."""
    s3: Any = server.client()
    key = f"{tenant}/self.jpg"
    put_source(s3, key)
    s3.copy_object(
        Bucket=INBOX,
        Key=key,
        CopySource={"Bucket": INBOX, "Key": key},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
    )
    head = s3.head_object(Bucket=INBOX, Key=key)
    assert head["ContentType"] == "text/plain" and head["ContentLength"] == len(BODY)


def test_copy_preconditions(server: RunningServer, tenant: str) -> None:
    """x-amz-copy-source-if-* that hold let the copy happen."""
    s3: Any = server.client()
    src = f"{tenant}/pre.jpg"
    etag = put_source(s3, src)
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)
    for extra in (
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": '"abc"'},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": future},
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},
    ):
        s3.copy_object(Bucket=INBOX, Key=f"{tenant}/pre2.jpg", CopySource=f"{INBOX}/{src}", **extra)


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"CopySourceIfMatch": '"0000"'}, 412, "PreconditionFailed"),
        ({"CopySourceIfNoneMatch": "ETAG"}, 412, "PreconditionFailed"),
        ({"CopySourceIfModifiedSince": "FUTURE"}, 412, "PreconditionFailed"),
        ({"CopySourceIfUnmodifiedSince": "PAST"}, 412, "PreconditionFailed"),
        ({"CopySourceIfNoneMatch": "ETAG", "CopySourceIfModifiedSince": "PAST"}, 412,
         "PreconditionFailed"),
        ({"CopySource": "SELF"}, 400, "InvalidRequest"),
        ({"CopySource": f"{INBOX}/MISSING"}, 404, "NoSuchKey"),
        ({"CopySource": "no-such-bucket-here/x"}, 404, "NoSuchBucket"),
        ({"CopySource": "SRC?versionId=abc"}, 400, "InvalidArgument"),
        ({"CopySource": INBOX}, 400, "InvalidArgument"),
        ({"MetadataDirective": "MERGE"}, 400, "InvalidArgument"),
        ({"Key": "outside/layout.jpg"}, 403, "AccessDenied"),
        ({"Key": "KEY/../x.jpg"}, 400, "InvalidArgument"),
        ({"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ({"ACL": "everyone"}, 400, "InvalidArgument"),
        ({"MetadataDirective": "REPLACE", "Metadata": {"big": "x" * 3000}}, 400,
         "MetadataTooLarge"),
    ],
)  # fmt: skip
def test_copy_refusals_change_nothing(
    server: RunningServer, tenant: str, extra: dict[str, Any], status: int, code: str
) -> None:
    """Each refused copy has AWS's status and code, and both folders stay unchanged."""
    s3: Any = server.client()
    src = f"{tenant}/src.jpg"
    etag = put_source(s3, src)
    now = datetime.now(UTC)
    values = {
        "ETAG": etag,
        "FUTURE": now + timedelta(days=1),
        "PAST": now - timedelta(days=1),
        "SELF": f"{INBOX}/{src}",
        "SRC?versionId=abc": f"{INBOX}/{src}?versionId=abc",
    }
    kwargs: dict[str, Any] = {
        "Bucket": INBOX,
        "Key": f"{tenant}/dst.jpg",
        "CopySource": f"{INBOX}/{src}",
    }
    for name, value in extra.items():
        if isinstance(value, str):
            value = values.get(value, value)
            if isinstance(value, str):
                value = value.replace("MISSING", f"{tenant}/missing").replace("KEY", tenant)
        kwargs[name] = value
    if extra.get("CopySource") == "SELF":
        kwargs["Key"] = src
    before = (snapshot(server.bucket_dir(INBOX)), snapshot(server.bucket_dir(LONGTERM)))
    with pytest.raises(ClientError) as info:
        s3.copy_object(**kwargs)
    assert error_of(info) == (status, code)
    assert (snapshot(server.bucket_dir(INBOX)), snapshot(server.bucket_dir(LONGTERM))) == before
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_copy_to_itself_message(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    key = f"{tenant}/same.jpg"
    put_source(s3, key)
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=INBOX, Key=key, CopySource={"Bucket": INBOX, "Key": key})
    assert info.value.response["Error"]["Message"].startswith(
        "This copy request is illegal because it is trying to copy an object to itself"
    )


def test_copy_keeps_checksum_algorithm(server: RunningServer, tenant: str) -> None:
    """A source stored with a CRC32 keeps one on the copy, recomputed from the bytes."""
    s3: Any = server.client(request_checksum_calculation="when_supported")
    src = f"{tenant}/crc.jpg"
    put = s3.put_object(Bucket=INBOX, Key=src, Body=BODY, ChecksumAlgorithm="CRC32")
    result = s3.copy_object(Bucket=LONGTERM, Key=src, CopySource={"Bucket": INBOX, "Key": src})
    assert result["CopyObjectResult"]["ChecksumCRC32"] == put["ChecksumCRC32"]
    head = s3.head_object(Bucket=LONGTERM, Key=src, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == put["ChecksumCRC32"]


def test_copy_large_object_streams(server: RunningServer, tenant: str) -> None:
    """A 12 MiB object copies byte for byte (streamed through a temporary file)."""
    s3: Any = server.client()
    big = bytes(range(256)) * (12 * 4096)
    src = f"{tenant}/big.bin"
    s3.put_object(Bucket=INBOX, Key=src, Body=big)
    result = s3.copy_object(Bucket=LONGTERM, Key=src, CopySource={"Bucket": INBOX, "Key": src})
    assert result["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(big).hexdigest()}"'
    assert (server.bucket_dir(LONGTERM) / src).read_bytes() == big


@pytest.mark.parametrize(
    ("condition", "status", "code"),
    [
        ({"IfNoneMatch": "*"}, 412, "PreconditionFailed"),
        ({"IfMatch": '"0123456789abcdef0123456789abcdef"'}, 412, "PreconditionFailed"),
    ],
)
def test_conditional_copy_never_overwrites_the_destination(
    server: RunningServer, tenant: str, condition: dict[str, str], status: int, code: str
) -> None:
    """CopyObject's If-None-Match / If-Match are about the destination (conditional
    writes): a failed one is 412 and the object already there stays as it was."""
    s3: Any = server.client()
    src = f"{tenant}/src.jpg"
    put_source(s3, src)
    dst = f"{tenant}/taken.jpg"
    s3.put_object(Bucket=INBOX, Key=dst, Body=b"already here")
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=INBOX, Key=dst, CopySource=f"{INBOX}/{src}", **condition)
    assert error_of(info) == (status, code)
    assert snapshot(server.bucket_dir(INBOX)) == before
    assert s3.get_object(Bucket=INBOX, Key=dst)["Body"].read() == b"already here"
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_conditional_copy_that_holds_is_published(server: RunningServer, tenant: str) -> None:
    """If-None-Match: * onto a free key, and If-Match of the current destination ETag."""
    s3: Any = server.client()
    src = f"{tenant}/src.jpg"
    put_source(s3, src)
    dst = f"{tenant}/new.jpg"
    s3.copy_object(Bucket=INBOX, Key=dst, CopySource=f"{INBOX}/{src}", IfNoneMatch="*")
    etag = s3.head_object(Bucket=INBOX, Key=dst)["ETag"]
    s3.copy_object(
        Bucket=INBOX, Key=dst, CopySource=f"{INBOX}/{src}", IfMatch=etag,
        MetadataDirective="REPLACE", ContentType="image/png",
    )
    assert s3.head_object(Bucket=INBOX, Key=dst)["ContentType"] == "image/png"
    with pytest.raises(ClientError) as info:
        s3.copy_object(
            Bucket=INBOX, Key=f"{tenant}/absent.jpg", CopySource=f"{INBOX}/{src}", IfMatch=etag
        )
    assert error_of(info) == (404, "NoSuchKey")
