"""Bucket calls, object tagging and ACLs, and a worker-style flow with treq."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import pytest
import pytest_twisted
import treq
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


# -- buckets --------------------------------------------------------------------


def test_list_buckets_shows_both_with_stable_dates(server: RunningServer) -> None:
    s3: Any = server.client()
    first = s3.list_buckets()
    second = s3.list_buckets()
    assert [b["Name"] for b in first["Buckets"]] == sorted([INBOX, LONGTERM])
    assert all(isinstance(b["CreationDate"], datetime) for b in first["Buckets"])
    assert first["Buckets"] == second["Buckets"]
    assert len(first["Owner"]["ID"]) == 64


def test_head_bucket(server: RunningServer) -> None:
    s3: Any = server.client()
    response = s3.head_bucket(Bucket=LONGTERM)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    assert response["BucketRegion"] == REGION


def test_head_missing_bucket_is_404_without_body(server: RunningServer) -> None:
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket="no-such-bucket-here")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert info.value.response["Error"]["Code"] == "404"


def test_bucket_location_is_empty_for_us_east_1(server: RunningServer) -> None:
    s3: Any = server.client()
    assert s3.get_bucket_location(Bucket=INBOX).get("LocationConstraint") is None


def test_bucket_location_other_region(start_server: Any) -> None:
    running: RunningServer = start_server(AWS_S3_REGION_NAME="eu-central-1")
    import boto3
    from botocore.config import Config

    s3: Any = boto3.client(
        "s3",
        endpoint_url=running.url,
        region_name="eu-central-1",
        aws_access_key_id=running.access_key,
        aws_secret_access_key=running.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert s3.get_bucket_location(Bucket=INBOX)["LocationConstraint"] == "eu-central-1"
    with pytest.raises(ClientError) as info:
        s3.create_bucket(
            Bucket=INBOX, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
    assert error_of(info) == (409, "BucketAlreadyOwnedByYou")


def test_bucket_versioning_is_empty(server: RunningServer) -> None:
    s3: Any = server.client()
    response = s3.get_bucket_versioning(Bucket=INBOX)
    assert "Status" not in response and "MFADelete" not in response


def test_create_existing_bucket_in_us_east_1_is_200(server: RunningServer) -> None:
    """us-east-1 answers a re-create of your own bucket with 200, as S3 does there."""
    s3: Any = server.client()
    before = snapshot(server.bucket_dir(INBOX))
    response = s3.create_bucket(Bucket=INBOX)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert snapshot(server.bucket_dir(INBOX)) == before


@pytest.mark.parametrize(
    ("call", "kwargs", "status", "code"),
    [
        ("create_bucket", {"Bucket": "another-bucket"}, 501, "NotImplemented"),
        ("create_bucket", {"Bucket": "Bad_Name"}, 400, "InvalidBucketName"),
        ("delete_bucket", {"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ("get_bucket_location", {"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ("get_bucket_versioning", {"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ("get_bucket_tagging", {"Bucket": INBOX}, 404, "NoSuchTagSet"),
        ("put_bucket_acl", {"Bucket": INBOX, "ACL": "everyone"}, 400, "InvalidArgument"),
    ],
)
def test_bucket_refusals(
    server: RunningServer, call: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        getattr(s3, call)(**kwargs)
    assert error_of(info) == (status, code)


def test_delete_nonempty_bucket_is_409(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    s3.put_object(Bucket=LONGTERM, Key=f"{tenant}/stay", Body=b"x")
    before = snapshot(server.bucket_dir(LONGTERM))
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=LONGTERM)
    assert error_of(info) == (409, "BucketNotEmpty")
    assert snapshot(server.bucket_dir(LONGTERM)) == before


def test_delete_empty_bucket_is_501_and_keeps_it(start_server: Any) -> None:
    running: RunningServer = start_server()
    s3: Any = running.client()
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=INBOX)
    assert error_of(info) == (501, "NotImplemented")
    assert running.bucket_dir(INBOX).is_dir()
    s3.head_bucket(Bucket=INBOX)


def test_bucket_acl(server: RunningServer) -> None:
    s3: Any = server.client()
    acl = s3.get_bucket_acl(Bucket=INBOX)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert acl["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"
    s3.put_bucket_acl(Bucket=INBOX, ACL="private")
    s3.delete_bucket_tagging(Bucket=INBOX)


# -- object tagging -----------------------------------------------------------------


def test_tagging_round_trip(server: RunningServer, tenant: str) -> None:
    """Tags from PutObject read back; PutObjectTagging replaces; DeleteObjectTagging clears."""
    s3: Any = server.client()
    key = f"{tenant}/tagged.jpg"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x", Tagging="a=1&b=two%20words")
    assert s3.get_object_tagging(Bucket=INBOX, Key=key)["TagSet"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "two words"},
    ]
    tags = [{"Key": "stage", "Value": "done & dusted"}, {"Key": "empty", "Value": ""}]
    s3.put_object_tagging(Bucket=INBOX, Key=key, Tagging={"TagSet": tags})
    assert s3.get_object_tagging(Bucket=INBOX, Key=key)["TagSet"] == tags
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"x"
    response = s3.delete_object_tagging(Bucket=INBOX, Key=key)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=INBOX, Key=key)["TagSet"] == []


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([{"Key": f"k{i}", "Value": "v"} for i in range(11)], "BadRequest"),
        ([{"Key": "k" * 129, "Value": "v"}], "InvalidTag"),
        ([{"Key": "k", "Value": "v" * 257}], "InvalidTag"),
        ([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}], "InvalidTag"),
        ([{"Key": "aws:x", "Value": "1"}], "InvalidTag"),
    ],
)
def test_tagging_refusals(
    server: RunningServer, tenant: str, tags: list[dict[str, str]], code: str
) -> None:
    s3: Any = server.client()
    key = f"{tenant}/t.jpg"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x", Tagging="keep=me")
    with pytest.raises(ClientError) as info:
        s3.put_object_tagging(Bucket=INBOX, Key=key, Tagging={"TagSet": tags})
    assert error_of(info) == (400, code)
    assert s3.get_object_tagging(Bucket=INBOX, Key=key)["TagSet"] == [
        {"Key": "keep", "Value": "me"}
    ]


@pytest.mark.parametrize(
    "call", ["get_object_tagging", "delete_object_tagging", "get_object_acl", "put_object_acl"]
)
def test_subresources_of_missing_key_are_no_such_key(
    server: RunningServer, tenant: str, call: str
) -> None:
    s3: Any = server.client()
    kwargs: dict[str, Any] = {"Bucket": INBOX, "Key": f"{tenant}/missing"}
    if call == "put_object_acl":
        kwargs["ACL"] = "private"
    with pytest.raises(ClientError) as info:
        getattr(s3, call)(**kwargs)
    assert error_of(info) == (404, "NoSuchKey")


# -- object ACLs ------------------------------------------------------------------


def test_object_acl(server: RunningServer, tenant: str) -> None:
    """GetObjectAcl shows the owner's FULL_CONTROL and the grant a canned ACL implies."""
    s3: Any = server.client()
    key = f"{tenant}/acl.jpg"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    acl = s3.get_object_acl(Bucket=INBOX, Key=key)
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]
    s3.put_object_acl(Bucket=INBOX, Key=key, ACL="public-read")
    acl = s3.get_object_acl(Bucket=INBOX, Key=key)
    assert acl["Grants"][1] == {
        "Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
        "Permission": "READ",
    }
    with pytest.raises(ClientError) as info:
        s3.put_object_acl(Bucket=INBOX, Key=key, ACL="everyone")
    assert error_of(info) == (400, "InvalidArgument")
    # A full policy body is accepted (and has no effect).
    s3.put_object_acl(
        Bucket=INBOX, Key=key, AccessControlPolicy={"Owner": acl["Owner"], "Grants": []}
    )


def test_put_object_acl_without_acl_is_refused(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    key = f"{tenant}/noacl.jpg"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    with pytest.raises(ClientError) as info:
        s3.put_object_acl(Bucket=INBOX, Key=key)
    assert error_of(info) == (400, "MissingSecurityHeader")


# -- the worker flow, with treq ---------------------------------------------------------


def _signed(server: RunningServer, method: str, path: str, body: bytes = b"", **headers: str):
    """treq request signed with botocore's SigV4 signer (as a worker would)."""
    url = f"{server.url}{path}"
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    signed = {k: [v] for k, v in request.headers.items()}
    return treq.request(method, url, headers=signed, data=body or None)


@pytest_twisted.ensureDeferred
async def test_worker_promotes_an_inbox_object(server: RunningServer, tenant: str) -> None:
    """GET from the inbox, PUT two variants, CopyObject the original, delete it from the inbox."""
    s3: Any = server.client()
    raw_key = f"{tenant}/upload/raw.jpg"
    original = b"\xff\xd8raw image bytes" * 1000
    s3.put_object(Bucket=INBOX, Key=raw_key, Body=original, ContentType="image/jpeg")

    response = await _signed(server, "GET", f"/{INBOX}/{raw_key}")
    assert response.code == 200
    raw = await response.content()
    assert raw == original

    for variant in ("thumb", "large"):
        body = raw[: len(raw) // (2 if variant == "large" else 10)]
        put = await _signed(
            server,
            "PUT",
            f"/{LONGTERM}/{tenant}/{variant}.webp",
            body,
            **{"Content-Type": "image/webp"},
        )
        assert put.code == 200, await put.text()

    copy = await _signed(
        server,
        "PUT",
        f"/{LONGTERM}/{tenant}/original.jpg",
        **{"x-amz-copy-source": f"/{INBOX}/{raw_key}"},
    )
    assert copy.code == 200, await copy.text()
    copy_xml = await copy.text()
    assert f"<ETag>&quot;{hashlib.md5(original).hexdigest()}&quot;</ETag>" in copy_xml or (
        f'<ETag>"{hashlib.md5(original).hexdigest()}"</ETag>' in copy_xml
    )

    delete = await _signed(server, "DELETE", f"/{INBOX}/{raw_key}")
    assert delete.code == 204

    assert not (server.bucket_dir(INBOX) / raw_key).exists()
    assert not (server.bucket_dir(INBOX) / tenant).exists()
    longterm = server.bucket_dir(LONGTERM) / tenant
    assert sorted(p.name for p in longterm.iterdir()) == [
        "large.webp",
        "original.jpg",
        "thumb.webp",
    ]
    assert (longterm / "original.jpg").read_bytes() == original
    head = s3.head_object(Bucket=LONGTERM, Key=f"{tenant}/original.jpg")
    assert head["ContentType"] == "image/jpeg"
