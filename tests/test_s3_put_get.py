"""PutObject, GetObject and HeadObject against the real daemon, driven by boto3."""

from __future__ import annotations

import base64
import hashlib
import http.client
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, RunningServer, clean_env, snapshot, temp_files

BODY = b"plantcdn round trip \x00\x01\xff" * 100


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def headers_of(response: Any) -> dict[str, str]:
    return response["ResponseMetadata"]["HTTPHeaders"]


def assert_request_ids(headers: dict[str, str]) -> None:
    assert headers.get("x-amz-request-id"), headers
    assert headers.get("x-amz-id-2"), headers


# ---------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
@pytest.mark.parametrize("bucket", [INBOX, LONGTERM])
def test_round_trip_keeps_bytes_and_metadata(
    server: RunningServer, tenant: str, checksums: str, bucket: str
) -> None:
    """What PutObject stores comes back from GetObject and HeadObject, and sits on disk."""
    s3: Any = server.client(request_checksum_calculation=checksums)
    key = f"{tenant}/photos/leaf.webp"
    expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    put = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=BODY,
        ContentType="image/webp",
        CacheControl="max-age=31536000, immutable",
        ContentDisposition='attachment; filename="leaf.webp"',
        ContentEncoding="identity",
        Expires=expires,
        Metadata={"Camera-Model": "Nikon D750", "plant": "42"},
        ACL="public-read",
    )
    assert put["ETag"] == md5_etag(BODY)
    assert_request_ids(headers_of(put))
    if checksums == "when_supported":
        crc = base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode()
        assert put["ChecksumCRC32"] == crc

    assert (server.bucket_dir(bucket) / key).read_bytes() == BODY

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == BODY
    head = s3.head_object(Bucket=bucket, Key=key)
    for response in (got, head):
        assert response["ETag"] == md5_etag(BODY)
        assert response["ContentLength"] == len(BODY)
        assert response["ContentType"] == "image/webp"
        assert response["CacheControl"] == "max-age=31536000, immutable"
        assert response["ContentDisposition"] == 'attachment; filename="leaf.webp"'
        assert response["ContentEncoding"] == "identity"
        assert parsedate_to_datetime(headers_of(response)["expires"]) == expires
        assert response["Metadata"] == {"camera-model": "Nikon D750", "plant": "42"}
        assert response["AcceptRanges"] == "bytes"
        assert isinstance(response["LastModified"], datetime)
        assert_request_ids(headers_of(response))


def test_checksum_is_returned_when_asked_for(server: RunningServer, tenant: str) -> None:
    """A CRC32 sent with the upload comes back from HeadObject with ChecksumMode=ENABLED."""
    s3: Any = server.client(request_checksum_calculation="when_supported")
    key = f"{tenant}/crc.bin"
    put = s3.put_object(Bucket=INBOX, Key=key, Body=BODY)
    head = s3.head_object(Bucket=INBOX, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == put["ChecksumCRC32"]


def test_default_content_type_and_empty_object(server: RunningServer, tenant: str) -> None:
    """An empty body with no Content-Type is stored as S3 stores it."""
    s3: Any = server.client()
    key = f"{tenant}/empty"
    put = s3.put_object(Bucket=INBOX, Key=key, Body=b"")
    assert put["ETag"] == md5_etag(b"")
    got = s3.get_object(Bucket=INBOX, Key=key)
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert (server.bucket_dir(INBOX) / key).read_bytes() == b""


def test_overwrite_replaces_bytes_and_metadata(server: RunningServer, tenant: str) -> None:
    """A second PutObject of the same key replaces both the bytes and every header."""
    s3: Any = server.client()
    key = f"{tenant}/again.txt"
    s3.put_object(
        Bucket=INBOX, Key=key, Body=b"first", ContentType="text/plain",
        CacheControl="no-cache", Metadata={"old": "1"},
    )  # fmt: skip
    s3.put_object(Bucket=INBOX, Key=key, Body=b"second version")
    got = s3.get_object(Bucket=INBOX, Key=key)
    assert got["Body"].read() == b"second version"
    assert got["ETag"] == md5_etag(b"second version")
    assert got["ContentType"] == "binary/octet-stream"
    assert "CacheControl" not in got
    assert got["Metadata"] == {}
    assert (server.bucket_dir(INBOX) / key).read_bytes() == b"second version"


@pytest.mark.parametrize(
    "acl", ["private", "public-read", "bucket-owner-full-control", "authenticated-read"]
)
def test_canned_acl_is_accepted(server: RunningServer, tenant: str, acl: str) -> None:
    """The canned ACL headers the SDKs and django-storages send do not stop an upload."""
    s3: Any = server.client()
    key = f"{tenant}/acl.txt"
    put = s3.put_object(Bucket=LONGTERM, Key=key, Body=b"x", ACL=acl)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    grants = s3.get_object_acl(Bucket=LONGTERM, Key=key)["Grants"]
    public = [
        g["Permission"]
        for g in grants
        if g["Grantee"].get("URI") == "http://acs.amazonaws.com/groups/global/AllUsers"
    ]
    assert public == (["READ"] if acl == "public-read" else [])


def test_temp_folder_is_empty_after_uploads(server: RunningServer, tenant: str) -> None:
    """A finished upload leaves no temporary file behind."""
    s3: Any = server.client()
    for n in range(3):
        s3.put_object(Bucket=INBOX, Key=f"{tenant}/t{n}", Body=BODY)
    assert temp_files(server.bucket_dir(INBOX)) == []


# ---------------------------------------------------------------------------
# Virtual-hosted addressing


def virtual_client(server: RunningServer, **config: Any) -> Any:
    """A virtual-hosted client: signs for ``{bucket}.localhost:<port>``, connects to 127.0.0.1."""
    s3: Any = server.client(
        addressing_style="virtual", endpoint_url=f"http://localhost:{server.port}", **config
    )

    def to_loopback(request: Any, **_: Any) -> None:
        host = request.url.split("/", 3)[2]
        request.headers["Host"] = host
        request.url = request.url.replace(f"//{host}/", f"//127.0.0.1:{server.port}/", 1)

    s3.meta.events.register("before-send.s3", to_loopback)
    return s3


def test_virtual_hosted_round_trip(server: RunningServer, tenant: str) -> None:
    """``Host: plantdb-inbox.localhost:<port>`` addresses the bucket like the path does."""
    s3 = virtual_client(server)
    key = f"{tenant}/virtual.txt"
    seen: list[str] = []
    s3.meta.events.register(
        "before-send.s3", lambda request, **_: seen.append(request.headers["Host"])
    )
    put = s3.put_object(Bucket=INBOX, Key=key, Body=b"virtual", ContentType="text/plain")
    assert put["ETag"] == md5_etag(b"virtual")
    assert (server.bucket_dir(INBOX) / key).read_bytes() == b"virtual"
    got = s3.get_object(Bucket=INBOX, Key=key)
    assert got["Body"].read() == b"virtual"
    assert got["ContentType"] == "text/plain"
    assert s3.head_object(Bucket=INBOX, Key=key)["ContentLength"] == 7
    assert seen and all(h.startswith(f"{INBOX}.localhost:") for h in seen)
    # Path style reads what virtual-hosted style wrote.
    path_style: Any = server.client()
    assert path_style.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"virtual"


def test_virtual_hosted_unknown_bucket(server: RunningServer, tenant: str) -> None:
    """An unknown bucket in the Host header is NoSuchBucket, as it is in the path."""
    s3 = virtual_client(server)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="no-such-bucket", Key=f"{tenant}/x")
    assert error_of(info) == (404, "NoSuchBucket")


# ---------------------------------------------------------------------------
# Presigned URLs


def presigning_client(server: RunningServer) -> Any:
    return server.client(signature_version="s3v4")


def urlopen(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_presigned_put_and_get(server: RunningServer, tenant: str) -> None:
    """URLs from generate_presigned_url upload and download with plain urllib."""
    s3 = presigning_client(server)
    key = f"{tenant}/presigned.jpg"
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": INBOX, "Key": key, "ContentType": "image/jpeg"},
        ExpiresIn=300,
    )  # fmt: skip
    assert "X-Amz-Signature=" in put_url
    status, headers, _ = urlopen(
        urllib.request.Request(
            put_url, data=BODY, method="PUT", headers={"Content-Type": "image/jpeg"}
        )
    )
    assert status == 200
    assert headers["ETag"] == md5_etag(BODY)
    assert (server.bucket_dir(INBOX) / key).read_bytes() == BODY

    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": key}, ExpiresIn=300
    )
    status, headers, body = urlopen(urllib.request.Request(get_url))
    assert (status, body) == (200, BODY)
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["x-amz-request-id"]


def test_presigned_get_with_response_overrides(server: RunningServer, tenant: str) -> None:
    """Signed ``response-*`` parameters override the stored headers of a download."""
    s3 = presigning_client(server)
    key = f"{tenant}/override.txt"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"override", ContentType="text/plain")
    url = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": INBOX,
            "Key": key,
            "ResponseContentDisposition": 'attachment; filename="x.txt"',
            "ResponseContentType": "application/octet-stream",
        },
    )
    status, headers, body = urlopen(urllib.request.Request(url))
    assert (status, body) == (200, b"override")
    assert headers["Content-Disposition"] == 'attachment; filename="x.txt"'
    assert headers["Content-Type"] == "application/octet-stream"


def test_presigned_put_with_wrong_content_type_is_refused(
    server: RunningServer, tenant: str
) -> None:
    """A presigned PUT signed for one Content-Type refuses another, and stores nothing."""
    s3 = presigning_client(server)
    key = f"{tenant}/presigned-ct.jpg"
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": INBOX, "Key": key, "ContentType": "image/jpeg"}
    )
    status, _, body = urlopen(
        urllib.request.Request(url, data=b"x", method="PUT", headers={"Content-Type": "text/html"})
    )
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    assert not (server.bucket_dir(INBOX) / key).exists()


# ---------------------------------------------------------------------------
# Ranges and conditional requests


@pytest.fixture
def stored(server: RunningServer, tenant: str) -> tuple[Any, str, dict[str, Any]]:
    s3: Any = server.client()
    key = f"{tenant}/ranged.bin"
    s3.put_object(Bucket=INBOX, Key=key, Body=bytes(range(100)))
    head = s3.head_object(Bucket=INBOX, Key=key)
    return s3, key, head


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=95-500", 95, 99),
    ],
)
def test_range(stored: tuple[Any, str, Any], header: str, first: int, last: int) -> None:
    """A satisfiable Range answers 206 with Content-Range and just those bytes."""
    s3, key, _ = stored
    got = s3.get_object(Bucket=INBOX, Key=key, Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/100"
    assert got["ContentLength"] == last - first + 1
    assert got["Body"].read() == bytes(range(first, last + 1))
    assert_request_ids(headers_of(got))


def test_range_not_satisfiable(stored: tuple[Any, str, Any]) -> None:
    """A range that starts past the end is 416 InvalidRange."""
    s3, key, _ = stored
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=key, Range="bytes=100-200")
    assert error_of(info) == (416, "InvalidRange")
    assert_request_ids(info.value.response["ResponseMetadata"]["HTTPHeaders"])


def not_modified(call: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as info:
        call()
    assert error_of(info) == (304, "304")
    headers: dict[str, str] = info.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert_request_ids(headers)
    return headers


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_none_match_gives_304_with_etag_and_last_modified(
    stored: tuple[Any, str, Any], operation: str
) -> None:
    """If-None-Match naming the current ETag is 304 carrying ETag and Last-Modified."""
    s3, key, head = stored
    headers = not_modified(
        lambda: getattr(s3, operation)(Bucket=INBOX, Key=key, IfNoneMatch=head["ETag"])
    )
    assert headers["etag"] == head["ETag"]
    assert parsedate_to_datetime(headers["last-modified"]) == head["LastModified"]


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
def test_if_modified_since_gives_304(stored: tuple[Any, str, Any], operation: str) -> None:
    """If-Modified-Since at or after Last-Modified is 304 carrying ETag and Last-Modified."""
    s3, key, head = stored
    headers = not_modified(
        lambda: getattr(s3, operation)(Bucket=INBOX, Key=key, IfModifiedSince=head["LastModified"])
    )
    assert headers["etag"] == head["ETag"]
    assert parsedate_to_datetime(headers["last-modified"]) == head["LastModified"]


def test_conditions_that_hold_return_the_object(stored: tuple[Any, str, Any]) -> None:
    """If-Match the ETag, If-None-Match another, modified since an hour ago: 200."""
    s3, key, head = stored
    hour_ago = head["LastModified"] - timedelta(hours=1)
    for kwargs in (
        {"IfMatch": head["ETag"]},
        {"IfNoneMatch": '"0123456789abcdef0123456789abcdef"'},
        {"IfModifiedSince": hour_ago},
        {"IfUnmodifiedSince": head["LastModified"] + timedelta(hours=1)},
    ):
        got = s3.get_object(Bucket=INBOX, Key=key, **kwargs)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200, kwargs
        assert got["Body"].read() == bytes(range(100))


@pytest.mark.parametrize("operation", ["get_object", "head_object"])
@pytest.mark.parametrize("condition", ["IfMatch", "IfUnmodifiedSince"])
def test_failed_precondition_is_412(
    stored: tuple[Any, str, Any], operation: str, condition: str
) -> None:
    """If-Match another ETag, or If-Unmodified-Since before Last-Modified: 412."""
    s3, key, head = stored
    value: Any = (
        '"0123456789abcdef0123456789abcdef"'
        if condition == "IfMatch"
        else head["LastModified"] - timedelta(hours=1)
    )
    with pytest.raises(ClientError) as info:
        getattr(s3, operation)(Bucket=INBOX, Key=key, **{condition: value})
    status, code = error_of(info)
    assert status == 412
    # HEAD responses carry no body, so botocore only knows the status.
    assert code == ("PreconditionFailed" if operation == "get_object" else "412")
    assert_request_ids(info.value.response["ResponseMetadata"]["HTTPHeaders"])


# ---------------------------------------------------------------------------
# What does not exist


def test_missing_key_is_no_such_key(server: RunningServer, tenant: str) -> None:
    """GetObject of a key never written: 404 NoSuchKey; HeadObject: 404."""
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=f"{tenant}/nothing-here")
    assert error_of(info) == (404, "NoSuchKey")
    assert_request_ids(info.value.response["ResponseMetadata"]["HTTPHeaders"])
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=INBOX, Key=f"{tenant}/nothing-here")
    assert error_of(info) == (404, "404")


@pytest.mark.parametrize("operation", ["get_object", "put_object", "head_object"])
def test_unknown_bucket_is_no_such_bucket(
    server: RunningServer, tenant: str, operation: str
) -> None:
    """A bucket plantcdn does not hold is 404 NoSuchBucket, and nothing is created."""
    s3: Any = server.client()
    before = sorted(p.name for p in server.data_dir.iterdir())
    kwargs: dict[str, Any] = {"Bucket": "not-a-plantcdn-bucket", "Key": f"{tenant}/x"}
    if operation == "put_object":
        kwargs["Body"] = b"x"
    with pytest.raises(ClientError) as info:
        getattr(s3, operation)(**kwargs)
    assert error_of(info) == (404, "404" if operation == "head_object" else "NoSuchBucket")
    assert_request_ids(info.value.response["ResponseMetadata"]["HTTPHeaders"])
    assert sorted(p.name for p in server.data_dir.iterdir()) == before


@pytest.mark.parametrize(
    ("operation", "kwargs"),
    [
        ("get_bucket_lifecycle_configuration", {}),
        ("get_bucket_policy", {}),
        ("get_bucket_website", {}),
        ("get_object_retention", {"Key": "company_1/plant_1/x"}),
    ],
)
def test_unsupported_operation_is_501(
    server: RunningServer, operation: str, kwargs: dict[str, str]
) -> None:
    """An S3 operation plantcdn does not offer is 501 NotImplemented, never a 500."""
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        getattr(s3, operation)(Bucket=INBOX, **kwargs)
    assert error_of(info) == (501, "NotImplemented")
    assert_request_ids(info.value.response["ResponseMetadata"]["HTTPHeaders"])
    resource = f"/{INBOX}" + (f"/{kwargs['Key']}" if "Key" in kwargs else "")
    assert info.value.response["Error"]["Resource"] == resource


def test_error_body_is_s3_xml(server: RunningServer, tenant: str) -> None:
    """An error is AWS's XML <Error> with Code, Message, Resource and RequestId."""
    key = f"{tenant}/absent"
    s3 = presigning_client(server)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": INBOX, "Key": key})
    status, headers, body = urlopen(urllib.request.Request(url))
    assert status == 404
    assert headers["Content-Type"] == "application/xml"
    text = body.decode()
    assert "<Code>NoSuchKey</Code>" in text
    assert "<Message>" in text
    assert f"<Resource>/{INBOX}/{key}</Resource>" in text
    assert f"<RequestId>{headers['x-amz-request-id']}</RequestId>" in text


def test_unsigned_request_gets_request_ids(server: RunningServer, tenant: str) -> None:
    """Even an anonymous refusal carries x-amz-request-id and x-amz-id-2."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/{INBOX}/{tenant}/x", headers={"Date": formatdate(usegmt=True)})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert response.getheader("x-amz-request-id")
    assert response.getheader("x-amz-id-2")


def test_snapshot_helper_sees_stored_objects(server: RunningServer, tenant: str) -> None:
    """Objects are plain files below the bucket folder, and nothing else appears there."""
    s3: Any = server.client()
    folder = server.bucket_dir(LONGTERM)
    before = snapshot(folder)
    key = f"{tenant}/a/b/c.txt"
    s3.put_object(Bucket=LONGTERM, Key=key, Body=b"deep")
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k not in before} == {key: b"deep"}


# ---------------------------------------------------------------------------
# Keys that need encoding, and bodies large enough for Expect: 100-continue

ODD_NAMES = [
    "my photo (1).jpg",
    "plus+sign&amp=ersand.jpg",
    "percent%20literal%.jpg",
    "ünïcödé/日本語.png",
    "tilde~star*quote'.txt",
    "semi;colon,comma@at$dollar!bang.txt",
    "question?hash#.txt",
    "deep/er/and/deeper/leaf.txt",
]


@pytest.mark.parametrize("name", ODD_NAMES)
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_keys_that_need_encoding(server: RunningServer, tenant: str, name: str, style: str) -> None:
    """Keys with spaces, reserved and non-ASCII characters sign, store and read back."""
    s3 = virtual_client(server) if style == "virtual" else server.client()
    key = f"{tenant}/{name}"
    s3.put_object(Bucket=INBOX, Key=key, Body=name.encode())
    assert (server.bucket_dir(INBOX) / key).read_bytes() == name.encode()
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == name.encode()
    url = presigning_client(server).generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": key}
    )
    status, _, body = urlopen(urllib.request.Request(url))
    assert (status, body) == (200, name.encode())


def test_large_put_with_expect_continue(server: RunningServer, tenant: str) -> None:
    """A 3 MiB PutObject (botocore sends Expect: 100-continue) round-trips."""
    s3: Any = server.client()
    data = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)
    key = f"{tenant}/large.bin"
    sent: list[str | None] = []
    s3.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers.get("Expect"))
    )
    put = s3.put_object(Bucket=INBOX, Key=key, Body=data)
    assert sent == [b"100-continue"] or sent == ["100-continue"]
    assert put["ETag"] == md5_etag(data)
    assert (server.bucket_dir(INBOX) / key).read_bytes() == data
    got = s3.get_object(Bucket=INBOX, Key=key, Range="bytes=1048576-1048579")
    assert got["Body"].read() == data[1048576:1048580]


# ---------------------------------------------------------------------------
# Restarts


def test_metadata_survives_restart_and_stale_temp_files_go(tmp_path: Any) -> None:
    """Objects and their metadata outlive the process; unfinished uploads do not."""
    data = tmp_path / "data"
    data.mkdir()
    first = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    key = "company_7/plant_8/kept.txt"
    try:
        s3: Any = first.client()
        s3.put_object(
            Bucket=INBOX, Key=key, Body=b"kept", ContentType="text/plain",
            CacheControl="no-store", Metadata={"Origin": "camera"},
        )  # fmt: skip
        before = s3.head_object(Bucket=INBOX, Key=key)
    finally:
        first.stop()
    stale = first.bucket_dir(INBOX) / ".plantcdn" / "tmp" / "left-over.part"
    stale.write_bytes(b"half an upload")
    second = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    try:
        s3 = second.client()
        after = s3.head_object(Bucket=INBOX, Key=key)
        assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"kept"
    finally:
        second.stop()
    for name in ("ETag", "ContentType", "CacheControl", "Metadata", "LastModified"):
        assert after[name] == before[name], name
    assert after["Metadata"] == {"origin": "camera"}
    assert not stale.exists()


def test_failed_conditional_put_leaves_no_temporary_file(
    server: RunningServer, tenant: str
) -> None:
    """If-None-Match: * over an existing key is 412 after the body arrived: the
    body's temporary file goes too, and the object stays."""
    s3: Any = server.client()
    key = f"{tenant}/cond.bin"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"first")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=INBOX, Key=key, Body=b"second" * 1000, IfNoneMatch="*")
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"first"
    assert temp_files(server.bucket_dir(INBOX)) == []
