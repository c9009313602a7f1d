"""DeleteObject and DeleteObjects against the real daemon, driven by boto3 and raw HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def meta_files(bucket_dir: Path) -> set[str]:
    return {p.name for p in (bucket_dir / ".plantcdn" / "meta").rglob("*.json")}


def test_delete_removes_file_metadata_and_empty_folders(server: RunningServer, tenant: str) -> None:
    """DeleteObject answers 204 and leaves no file, no metadata and no empty folder behind."""
    s3: Any = server.client()
    root = server.bucket_dir(INBOX)
    before_meta = meta_files(root)
    key = f"{tenant}/deep/er/photo.jpg"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    assert meta_files(root) - before_meta or os.getxattr(root / key, "user.plantcdn.meta")
    response = s3.delete_object(Bucket=INBOX, Key=key)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not (root / key).exists()
    assert meta_files(root) == before_meta
    company = tenant.split("/")[0]
    assert not (root / company).exists()
    assert root.is_dir()


def test_delete_keeps_siblings(server: RunningServer, tenant: str) -> None:
    """Only the deleted key's file goes; a sibling and their folder stay."""
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/a", Body=b"a")
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/b", Body=b"b")
    s3.delete_object(Bucket=INBOX, Key=f"{tenant}/a")
    assert s3.get_object(Bucket=INBOX, Key=f"{tenant}/b")["Body"].read() == b"b"


def test_delete_missing_key_is_204(server: RunningServer, tenant: str) -> None:
    """As on S3, deleting a key that does not exist succeeds and changes nothing."""
    s3: Any = server.client()
    before = snapshot(server.bucket_dir(LONGTERM))
    response = s3.delete_object(Bucket=LONGTERM, Key=f"{tenant}/never-there")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert snapshot(server.bucket_dir(LONGTERM)) == before


def test_delete_of_a_prefix_deletes_nothing(server: RunningServer, tenant: str) -> None:
    """A key that names a folder of other keys is not an object: 204, the folder stays."""
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/dir/file", Body=b"x")
    s3.delete_object(Bucket=INBOX, Key=f"{tenant}/dir")
    assert (server.bucket_dir(INBOX) / tenant / "dir" / "file").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ({"Bucket": INBOX, "VersionId": "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"}, 400, "InvalidArgument"),
        ({"Bucket": INBOX, "IfMatch": '"' + "0" * 32 + '"'}, 412, "PreconditionFailed"),
    ],
)  # fmt: skip
def test_delete_refusals_change_nothing(
    server: RunningServer, tenant: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    s3: Any = server.client()
    key = f"{tenant}/keep"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"keep")
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(ClientError) as info:
        s3.delete_object(Key=key, **kwargs)
    assert error_of(info) == (status, code)
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_delete_if_match(server: RunningServer, tenant: str) -> None:
    """If-Match with the current ETag deletes; on a missing key it is NoSuchKey."""
    s3: Any = server.client()
    key = f"{tenant}/cond"
    etag = s3.put_object(Bucket=INBOX, Key=key, Body=b"v")["ETag"]
    s3.delete_object(Bucket=INBOX, Key=key, IfMatch=etag)
    with pytest.raises(ClientError) as info:
        s3.delete_object(Bucket=INBOX, Key=key, IfMatch=etag)
    assert error_of(info) == (404, "NoSuchKey")


def test_delete_null_version_is_accepted(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    key = f"{tenant}/nullv"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"v")
    s3.delete_object(Bucket=INBOX, Key=key, VersionId="null")
    assert not (server.bucket_dir(INBOX) / key).exists()


# -- DeleteObjects ----------------------------------------------------------------


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_delete_objects_reports_each_key(
    server: RunningServer, tenant: str, checksums: str
) -> None:
    """Existing and missing keys are both Deleted; a bad version is a per-key Error."""
    s3: Any = server.client(request_checksum_calculation=checksums)
    keys = [f"{tenant}/{n}" for n in ("a", "b/c", "d e+f")]
    for key in keys:
        s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    objects = [{"Key": k} for k in keys] + [{"Key": f"{tenant}/missing"}]
    objects.append({"Key": f"{tenant}/versioned", "VersionId": "abc"})
    result = s3.delete_objects(Bucket=INBOX, Delete={"Objects": objects})
    assert [d["Key"] for d in result["Deleted"]] == keys + [f"{tenant}/missing"]
    assert result["Errors"] == [
        {
            "Key": f"{tenant}/versioned",
            "VersionId": "abc",
            "Code": "NoSuchVersion",
            "Message": "The specified version does not exist.",
        }
    ]
    for key in keys:
        assert not (server.bucket_dir(INBOX) / key).exists()


def test_delete_objects_quiet_lists_only_errors(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/q", Body=b"x")
    result = s3.delete_objects(
        Bucket=INBOX, Delete={"Objects": [{"Key": f"{tenant}/q"}], "Quiet": True}
    )
    assert "Deleted" not in result and "Errors" not in result
    assert not (server.bucket_dir(INBOX) / tenant / "q").exists()


def test_delete_objects_etag_condition(server: RunningServer, tenant: str) -> None:
    """A per-object ETag that does not match keeps that object and reports PreconditionFailed."""
    s3: Any = server.client()
    key = f"{tenant}/etagged"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    result = s3.delete_objects(
        Bucket=INBOX,
        Delete={"Objects": [{"Key": key, "ETag": '"00000000000000000000000000000000"'}]},
    )
    assert result["Errors"][0]["Code"] == "PreconditionFailed"
    assert (server.bucket_dir(INBOX) / key).exists()


def test_delete_objects_more_than_1000_is_malformed(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/k0", Body=b"x")
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(ClientError) as info:
        s3.delete_objects(
            Bucket=INBOX, Delete={"Objects": [{"Key": f"{tenant}/k{i}"} for i in range(1001)]}
        )
    assert error_of(info) == (400, "MalformedXML")
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_delete_objects_exactly_1000(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    result = s3.delete_objects(
        Bucket=INBOX, Delete={"Objects": [{"Key": f"{tenant}/k{i}"} for i in range(1000)]}
    )
    assert len(result["Deleted"]) == 1000


def signed_post(server: RunningServer, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """A raw SigV4-signed POST, to send bodies boto3 would never send."""
    import urllib.error
    import urllib.request

    url = f"{server.url}{path}"
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="POST", headers=dict(request.headers))
    try:
        with urllib.request.urlopen(prepared) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"<Delete><Object><Key>company_1/plant_1/x</Key></Object></Delete>", {}, 400,
         b"<Code>InvalidRequest</Code>"),
        (b"<Delete><Object><Key>x</Key></Object></Delete>",
         {"Content-MD5": base64.b64encode(b"0" * 16).decode()}, 400, b"<Code>BadDigest</Code>"),
        (b"<Delete><Object><Key>x</Key></Object></Delete>",
         {"x-amz-checksum-crc32": "AAAAAA=="}, 400, b"<Code>BadDigest</Code>"),
        (b"not xml", None, 400, b"<Code>MalformedXML</Code>"),
        (b"", None, 400, b"<Code>MalformedXML</Code>"),
        (b"<Delete></Delete>", None, 400, b"<Code>MalformedXML</Code>"),
        (b"<Delete><Object></Object></Delete>", None, 400, b"<Code>MalformedXML</Code>"),
        (b"<Other><Object><Key>x</Key></Object></Other>", None, 400, b"<Code>MalformedXML</Code>"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "company_1/plant_1/x">]>'
         b"<Delete><Object><Key>&e;</Key></Object></Delete>", None, 400,
         b"<Code>MalformedXML</Code>"),
    ],
)  # fmt: skip
def test_delete_objects_body_refusals(
    server: RunningServer,
    tenant: str,
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
    code: bytes,
) -> None:
    """Missing checksum, wrong digests and malformed XML are refused; nothing is deleted."""
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/x", Body=b"x")
    before = snapshot(server.bucket_dir(INBOX))
    got_status, got_body = signed_post(
        server, f"/{INBOX}?delete", body, md5_header(body) if headers is None else headers
    )
    assert (got_status, code in got_body) == (status, True), got_body
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_missing_checksum_message_is_aws_wording(server: RunningServer) -> None:
    body = b"<Delete><Object><Key>x</Key></Object></Delete>"
    _, got = signed_post(server, f"/{INBOX}?delete", body, {})
    assert b"Missing required header for this request: Content-MD5 OR x-amz-checksum-*" in got


def test_delete_objects_unknown_bucket(server: RunningServer) -> None:
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.delete_objects(Bucket="no-such-bucket-here", Delete={"Objects": [{"Key": "k"}]})
    assert error_of(info) == (404, "NoSuchBucket")
