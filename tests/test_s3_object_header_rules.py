"""Request headers S3 checks on writes and reports on reads: server-side encryption,
object lock, the tag set of ``x-amz-tagging`` and archived storage classes.

Each refusal has S3's status and code and changes nothing on disk.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot, temp_files

from plantcdn.config import Config
from plantcdn.digests import PayloadDigest
from plantcdn.errors import S3Error
from plantcdn.storage import ObjectMeta, Storage
from plantcdn.writer import UploadWriter


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"ServerSideEncryption": "bogus"}, 400, "InvalidArgument"),
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}, 400, "InvalidRequest"),
        (
            {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": "2030-01-01T00:00:00Z"},
            400,
            "InvalidRequest",
        ),
        ({"ObjectLockLegalHoldStatus": "ON"}, 400, "InvalidRequest"),
        ({"Tagging": "a=1&a=2"}, 400, "InvalidTag"),
        ({"Tagging": "&".join(f"k{i}=v" for i in range(11))}, 400, "BadRequest"),
        ({"Tagging": "aws:secret=1"}, 400, "InvalidTag"),
    ],
)
def test_refused_write_headers_change_nothing(
    server: RunningServer, tenant: str, extra: dict[str, Any], status: int, code: str
) -> None:
    s3: Any = server.client()
    before = snapshot(server.bucket_dir(INBOX))
    for call in (
        lambda: s3.put_object(Bucket=INBOX, Key=f"{tenant}/a.bin", Body=b"x" * 100, **extra),
        lambda: s3.create_multipart_upload(Bucket=INBOX, Key=f"{tenant}/b.bin", **extra),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert error_of(info) == (status, code)
    assert snapshot(server.bucket_dir(INBOX)) == before
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_reads_report_encryption_and_tag_count(server: RunningServer, tenant: str) -> None:
    """S3 encrypts every object (SSE-S3 by default) and says so on GET and HEAD, with
    ``x-amz-tagging-count`` for a tagged object (boto3's TagCount)."""
    s3: Any = server.client()
    key = f"{tenant}/tagged.bin"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x", Tagging="a=1&b=2")
    for got in (s3.get_object(Bucket=INBOX, Key=key), s3.head_object(Bucket=INBOX, Key=key)):
        assert got["ServerSideEncryption"] == "AES256"
        assert got["TagCount"] == 2
    plain = f"{tenant}/plain.bin"
    s3.put_object(Bucket=INBOX, Key=plain, Body=b"x")
    assert "TagCount" not in s3.head_object(Bucket=INBOX, Key=plain)


def test_archived_objects_must_be_restored_before_they_are_read(
    server: RunningServer, tenant: str
) -> None:
    """GLACIER and DEEP_ARCHIVE objects: HEAD works, GetObject and CopyObject from them
    are 403 ``InvalidObjectState`` (S3 wants a RestoreObject first)."""
    s3: Any = server.client()
    for storage_class in ("GLACIER", "DEEP_ARCHIVE"):
        key = f"{tenant}/{storage_class}.bin"
        s3.put_object(Bucket=INBOX, Key=key, Body=b"cold", StorageClass=storage_class)
        assert s3.head_object(Bucket=INBOX, Key=key)["StorageClass"] == storage_class
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket=INBOX, Key=key)
        assert error_of(info) == (403, "InvalidObjectState")
        assert info.value.response["Error"]["StorageClass"] == storage_class
        with pytest.raises(ClientError) as info:
            s3.copy_object(Bucket=INBOX, Key=f"{tenant}/copy.bin", CopySource=f"{INBOX}/{key}")
        assert error_of(info) == (403, "InvalidObjectState")
    instant = f"{tenant}/ir.bin"
    s3.put_object(Bucket=INBOX, Key=instant, Body=b"warm", StorageClass="GLACIER_IR")
    assert s3.get_object(Bucket=INBOX, Key=instant)["Body"].read() == b"warm"


def test_archived_objects_are_refused_through_cdn_and_part_copies(
    server: RunningServer, tenant: str
) -> None:
    """CloudFront passes on the origin's 403 InvalidObjectState; UploadPartCopy from an
    archived source is refused as CopyObject is."""
    s3: Any = server.client()
    key = f"{tenant}/cold.webp"
    s3.put_object(Bucket=LONGTERM, Key=key, Body=b"cold", StorageClass="GLACIER")
    for _ in range(2):  # and never from the edge's memory either
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}/cdn/{key}")
        assert info.value.code == 403
        assert b"<Code>InvalidObjectState</Code>" in info.value.read()
    head = urllib.request.Request(f"{server.url}/cdn/{key}", method="HEAD")
    with urllib.request.urlopen(head) as reply:
        assert reply.status == 200
    upload = s3.create_multipart_upload(Bucket=LONGTERM, Key=f"{tenant}/warm.webp")
    with pytest.raises(ClientError) as error:
        s3.upload_part_copy(
            Bucket=LONGTERM, Key=f"{tenant}/warm.webp", UploadId=upload["UploadId"],
            PartNumber=1, CopySource={"Bucket": LONGTERM, "Key": key},
        )
    assert error_of(error) == (403, "InvalidObjectState")


def test_sdk_checksum_algorithm_needs_its_checksum(server: RunningServer, tenant: str) -> None:
    """``x-amz-sdk-checksum-algorithm`` promises an ``x-amz-checksum-*`` header or
    trailer; without either S3 refuses the upload (400 InvalidRequest)."""
    url = f"{server.url}/{INBOX}/{tenant}/sdk.bin"
    body = b"hello world"
    request = AWSRequest(
        method="PUT", url=url, data=body, headers={"x-amz-sdk-checksum-algorithm": "CRC32"}
    )
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="PUT", headers=dict(request.headers))
    before = snapshot(server.bucket_dir(INBOX))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(prepared)
    assert info.value.code == 400
    assert b"<Code>InvalidRequest</Code>" in info.value.read()
    assert snapshot(server.bucket_dir(INBOX)) == before


def test_website_redirect_location_is_kept_and_checked(server: RunningServer, tenant: str) -> None:
    """Stored with the object and shown by GET and HEAD; not copied along with the
    metadata (S3 takes it from the copy request only); a value that is neither a path
    nor an http(s) URL is 400 InvalidRedirectLocation."""
    s3: Any = server.client()
    key = f"{tenant}/page.html"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"x", WebsiteRedirectLocation="/other.html")
    assert s3.head_object(Bucket=INBOX, Key=key)["WebsiteRedirectLocation"] == "/other.html"
    assert s3.get_object(Bucket=INBOX, Key=key)["WebsiteRedirectLocation"] == "/other.html"
    s3.copy_object(Bucket=INBOX, Key=f"{tenant}/copy.html", CopySource=f"{INBOX}/{key}")
    assert "WebsiteRedirectLocation" not in s3.head_object(Bucket=INBOX, Key=f"{tenant}/copy.html")
    upload = s3.create_multipart_upload(
        Bucket=INBOX, Key=f"{tenant}/mp.html", WebsiteRedirectLocation="https://example.com/"
    )
    part = s3.upload_part(
        Bucket=INBOX, Key=f"{tenant}/mp.html", UploadId=upload["UploadId"], PartNumber=1, Body=b"y"
    )
    s3.complete_multipart_upload(
        Bucket=INBOX,
        Key=f"{tenant}/mp.html",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=INBOX, Key=f"{tenant}/mp.html")
    assert head["WebsiteRedirectLocation"] == "https://example.com/"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=INBOX, Key=key, Body=b"z", WebsiteRedirectLocation="other.html")
    assert error_of(info) == (400, "InvalidRedirectLocation")
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"x"


def test_a_conditional_put_that_loses_the_race_leaves_no_temporary_file(
    server: RunningServer, tenant: str
) -> None:
    """If-None-Match: * is checked again when the body is complete: another upload took
    the key meanwhile, so 412, and the loser's streamed body is removed."""
    import http.client

    key = f"{tenant}/race.bin"
    url = f"{server.url}/{INBOX}/{key}"
    body = b"late" * 50_000
    request = AWSRequest(method="PUT", url=url, data=body, headers={"If-None-Match": "*"})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    host = url.split("/")[2]
    connection = http.client.HTTPConnection(host, timeout=10)
    connection.putrequest("PUT", f"/{INBOX}/{key}", skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[:1000])
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=key, Body=b"first")  # the race's winner
    connection.send(body[1000:])
    reply = connection.getresponse()
    assert reply.status == 412
    assert b"<Code>PreconditionFailed</Code>" in reply.read()
    connection.close()
    assert s3.get_object(Bucket=INBOX, Key=key)["Body"].read() == b"first"
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_an_exclusive_commit_never_replaces_what_another_process_published(
    tmp_path: Path,
) -> None:
    """If-None-Match: * is decided by the kernel at the publish (a hard link fails on an
    existing name): a process of ``--workers`` that published meanwhile keeps its
    object, the loser gets 412 and leaves no temporary file."""
    storage = Storage(Config(data_dir=tmp_path, fsync=False))
    storage.prepare()
    bucket = storage.bucket(INBOX)
    key = "company_1/plant_2/once.bin"

    def upload(body: bytes) -> UploadWriter:
        writer = UploadWriter(storage, bucket, key, digest=PayloadDigest())
        writer.write(body)
        return writer

    def meta(result: Any) -> ObjectMeta:
        return ObjectMeta(etag=f'"{result.md5_hex}"', size=result.size, last_modified=0.0)

    first, second = upload(b"first"), upload(b"second")
    first.finish(meta, exclusive=True)
    with pytest.raises(S3Error) as info:
        second.finish(meta, exclusive=True)
    assert info.value.code == "PreconditionFailed"
    assert (bucket.root / key).read_bytes() == b"first"
    assert temp_files(bucket.root) == []


def test_metadata_that_outgrows_the_xattr_moves_to_the_sidecar(tmp_path: Path) -> None:
    """An update (tagging, ACL) too large for the extended attribute is kept in the
    sidecar, and the stale xattr, which reads would prefer, is removed."""
    storage = Storage(Config(data_dir=tmp_path, fsync=False))
    storage.prepare()
    bucket = storage.bucket(INBOX)
    key = "company_1/plant_2/grown.bin"
    writer = UploadWriter(storage, bucket, key, digest=PayloadDigest())
    writer.write(b"x")
    writer.finish(lambda r: ObjectMeta(etag=f'"{r.md5_hex}"', size=r.size, last_modified=0.0))
    found = storage.find(bucket, key)
    assert found is not None
    if not storage._has_xattr_meta(found.path):
        pytest.skip("no user xattrs here: metadata is in sidecars from the start")
    grown = ObjectMeta(
        etag=found.meta.etag, size=1, last_modified=0.0, tagging="k=" + "v" * 20_000
    )
    assert storage.update_meta(bucket, found, key, grown)
    again = storage.find(bucket, key)
    assert again is not None and again.meta.tagging == grown.tagging
