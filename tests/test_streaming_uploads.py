"""Upload bodies stream straight into storage; refusals are answered without storing a byte."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import boto3
import pytest
import urllib3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from conftest import INBOX, REGION, RunningServer, snapshot, temp_files, wait_until

MiB = 1024 * 1024


def test_bad_signature_on_a_large_put_is_refused_with_the_s3_error(
    server: RunningServer, tenant: str
) -> None:
    """boto3 sends Expect: 100-continue for large bodies; the refusal comes instead of 100."""
    before = snapshot(server.bucket_dir(INBOX))
    bad: Any = server.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as info:
        bad.put_object(Bucket=INBOX, Key=f"{tenant}/big.bin", Body=b"x" * (8 * MiB))
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert snapshot(server.bucket_dir(INBOX)) == before
    assert wait_until(lambda: temp_files(server.bucket_dir(INBOX)) == [])


def test_client_sending_the_whole_body_still_reads_the_refusal(
    server: RunningServer, tenant: str
) -> None:
    """A client that writes everything before reading (no Expect) gets the 403, not a reset."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = b"y" * (3 * MiB)
    connection.request("PUT", f"/{INBOX}/{tenant}/nosig.bin", body=body,
                       headers={"Content-Length": str(len(body))})
    response = connection.getresponse()
    assert response.status == 403
    assert b"<Code>AccessDenied</Code>" in response.read()
    assert not (server.bucket_dir(INBOX) / tenant / "nosig.bin").exists()


def test_post_over_content_length_range_is_cut_off_while_streaming(
    server: RunningServer, tenant: str
) -> None:
    """A 24 MiB file against a 1 MiB maximum: 400 EntityTooLarge, nothing stored."""
    s3: Any = boto3.client(
        "s3", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    post = s3.generate_presigned_post(
        INBOX, f"{tenant}/huge.jpg", Conditions=[["content-length-range", 1, MiB]]
    )
    fields = dict(post["fields"])
    fields["file"] = ("huge.jpg", b"z" * (24 * MiB), "image/jpeg")
    response = urllib3.PoolManager().request("POST", post["url"], fields=fields, retries=False)
    assert response.status == 400
    assert b"<Code>EntityTooLarge</Code>" in response.data
    assert not (server.bucket_dir(INBOX) / tenant).exists()
    assert wait_until(lambda: temp_files(server.bucket_dir(INBOX)) == [])


def test_client_that_disconnects_mid_body_leaves_nothing_behind(
    server: RunningServer, tenant: str
) -> None:
    """Half a signed body, then the connection drops: no object, no temporary file."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    body = b"q" * (4 * MiB)
    url = f"{server.url}/{INBOX}/{tenant}/cut.bin"
    request = botocore.awsrequest.AWSRequest(
        method="PUT", url=url, data=body,
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
    )
    credentials = botocore.credentials.Credentials(server.access_key, server.secret_key)
    botocore.auth.S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    prepared = request.prepare()
    head = [f"PUT /{INBOX}/{tenant}/cut.bin HTTP/1.1"]
    head += [f"Host: 127.0.0.1:{server.port}"]
    head += [f"{k}: {v}" for k, v in prepared.headers.items()]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[: len(body) // 2])
    assert wait_until(lambda: len(temp_files(server.bucket_dir(INBOX))) >= 1, timeout=5)
    sock.close()
    assert wait_until(lambda: temp_files(server.bucket_dir(INBOX)) == [], timeout=5)
    assert not (server.bucket_dir(INBOX) / tenant / "cut.bin").exists()


def test_upload_part_with_a_bad_signature_is_refused_before_its_body(
    server: RunningServer, tenant: str
) -> None:
    """UploadPart streams like PutObject: the 403 answers the head (boto3's
    Expect: 100-continue gets it instead of a 100), no part is kept."""
    s3: Any = server.client()
    key = f"{tenant}/parts.bin"
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    bad: Any = server.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as info:
        bad.upload_part(Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1,
                        Body=b"p" * (6 * MiB))
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id).get("Parts", []) == []
    part = s3.upload_part(Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1,
                          Body=b"q" * (6 * MiB))
    s3.complete_multipart_upload(
        Bucket=INBOX, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert (server.bucket_dir(INBOX) / key).read_bytes() == b"q" * (6 * MiB)
    assert wait_until(lambda: temp_files(server.bucket_dir(INBOX)) == [])


def test_unsigned_upload_part_gets_its_refusal_instead_of_100_continue(
    server: RunningServer, tenant: str
) -> None:
    """The refusal answers the head: the client never sends the 6 MiB it announced."""
    s3: Any = server.client()
    key = f"{tenant}/raw-parts.bin"
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    head = (
        f"PUT /{INBOX}/{key}?partNumber=1&uploadId={upload_id} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Length: {6 * MiB}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while b"</Error>" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"<Code>AccessDenied</Code>" in answer
    assert s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=INBOX, Key=key, UploadId=upload_id)
