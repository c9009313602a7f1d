"""With ``PLANTCDN_FSYNC=true`` (the default), every kind of write lands whole.

fsync'ed commits wait for the disk on the reactor's thread pool (see
``plantcdn.writer.durably``); this drives the real daemon in that setting with
the clients Plant-DB uses: boto3 PutObject, a multipart ``upload_fileobj`` with
parts in flight together, CopyObject, UploadPartCopy and a browser-style
presigned POST.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import boto3
import urllib3
from boto3.s3.transfer import TransferConfig
from conftest import INBOX, LONGTERM, REGION, temp_files, wait_until

MiB = 1024 * 1024


def test_every_write_kind_lands_whole_with_fsync_on(start_server, tenant: str) -> None:
    server = start_server(PLANTCDN_FSYNC="true")
    s3: Any = server.client()
    small = os.urandom(70_000)
    put = s3.put_object(Bucket=LONGTERM, Key=f"{tenant}/small.webp", Body=small)
    assert put["ETag"] == f'"{hashlib.md5(small).hexdigest()}"'

    big = os.urandom(17 * MiB)
    transfer = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                              max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(big), LONGTERM, f"{tenant}/big.bin", Config=transfer)
    head = s3.head_object(Bucket=LONGTERM, Key=f"{tenant}/big.bin")
    assert head["ETag"].endswith('-4"')
    assert head["ContentLength"] == len(big)

    s3.copy_object(Bucket=LONGTERM, Key=f"{tenant}/copy.webp",
                   CopySource={"Bucket": LONGTERM, "Key": f"{tenant}/small.webp"})

    upload = s3.create_multipart_upload(Bucket=LONGTERM, Key=f"{tenant}/assembled.webp")
    part = s3.upload_part_copy(
        Bucket=LONGTERM, Key=f"{tenant}/assembled.webp", UploadId=upload["UploadId"],
        PartNumber=1, CopySource={"Bucket": LONGTERM, "Key": f"{tenant}/small.webp"},
    )
    s3.complete_multipart_upload(
        Bucket=LONGTERM, Key=f"{tenant}/assembled.webp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )

    signer: Any = boto3.client("s3", endpoint_url=server.url, region_name=REGION,
                               aws_access_key_id=server.access_key,
                               aws_secret_access_key=server.secret_key)
    form = signer.generate_presigned_post(INBOX, f"{tenant}/raw.jpg")
    reply = urllib3.request(
        "POST", form["url"], fields={**form["fields"], "file": ("raw.jpg", small, "image/jpeg")}
    )
    assert reply.status == 204

    longterm, inbox = server.bucket_dir(LONGTERM), server.bucket_dir(INBOX)
    assert (longterm / tenant / "small.webp").read_bytes() == small
    assert (longterm / tenant / "big.bin").read_bytes() == big
    assert (longterm / tenant / "copy.webp").read_bytes() == small
    assert (longterm / tenant / "assembled.webp").read_bytes() == small
    assert (inbox / tenant / "raw.jpg").read_bytes() == small
    assert temp_files(longterm) == temp_files(inbox) == []
    uploads = longterm / ".plantcdn" / "multipart"
    # The completed upload's parts are removed just after its answer, by the reaper.
    assert wait_until(lambda: not uploads.exists() or not any(uploads.rglob("*.bin")))


def test_deletes_and_aborts_are_answered_with_fsync_on(start_server, tenant: str) -> None:
    """DeleteObject, DeleteObjects (a folder pruned, a key no file can have) and
    AbortMultipartUpload sync their removals on the thread pool, then answer as S3."""
    server = start_server(PLANTCDN_FSYNC="true")
    s3: Any = server.client()
    keys = [f"{tenant}/a/{n}.webp" for n in range(3)]
    for key in keys:
        s3.put_object(Bucket=LONGTERM, Key=key, Body=b"x")
    s3.delete_object(Bucket=LONGTERM, Key=keys[0])
    result = s3.delete_objects(
        Bucket=LONGTERM,
        Delete={"Objects": [{"Key": keys[1]}, {"Key": keys[2]}, {"Key": f"{tenant}/a/../x"}]},
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted([*keys[1:], f"{tenant}/a/../x"])
    assert not (server.bucket_dir(LONGTERM) / tenant / "a").exists()
    upload = s3.create_multipart_upload(Bucket=LONGTERM, Key=f"{tenant}/gone.bin")
    s3.abort_multipart_upload(
        Bucket=LONGTERM, Key=f"{tenant}/gone.bin", UploadId=upload["UploadId"]
    )
    assert s3.list_multipart_uploads(Bucket=LONGTERM).get("Uploads", []) == []
