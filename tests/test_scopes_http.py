"""Scoped credentials against the real daemon: boto3, presigned URLs and POSTs, reloads."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, RunningServer, snapshot, wait_until
from test_post_object import Body, post, presign, replace

MAIN_ID, MAIN_SECRET = "MAINKEYFORSCOPETESTS", "main-secret-for-scope-tests-0123456789"
WRITER_ID, WRITER_SECRET = "PLANT7WRITER", "writer-secret-for-scope-tests-012345"
READER_ID, READER_SECRET = "PLANT7READER", "reader-secret-for-scope-tests-012345"
MINE = "company_7/plant_3/"
OTHER = "company_8/plant_1/"

SCOPES = [
    {
        "access_key_id": WRITER_ID,
        "secret_access_key": WRITER_SECRET,
        "prefixes": [MINE],
        "operations": ["read", "write", "list"],
    },
    {
        "access_key_id": READER_ID,
        "secret_access_key": READER_SECRET,
        "prefixes": ["company_7/"],
        "operations": ["read", "delete"],
        "buckets": [INBOX],
    },
]


@pytest.fixture
def daemon(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> Iterator[tuple[RunningServer, Path]]:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps(SCOPES))
    running = start_server(
        AWS_S3_ACCESS_KEY_ID=MAIN_ID,
        AWS_S3_SECRET_ACCESS_KEY=MAIN_SECRET,
        PLANTCDN_CREDENTIALS_FILE=str(creds),
    )
    yield running, creds
    text = running.log_text
    for secret in (MAIN_SECRET, WRITER_SECRET, READER_SECRET):
        assert secret not in text, "a secret reached the log"


def client(server: RunningServer, key_id: str, secret: str, **config: Any) -> Any:
    return server.client(access_key=key_id, secret_key=secret, **config)


def code_of(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return str(info.value.response["Error"]["Code"])


def test_scoped_key_works_inside_its_prefix_and_is_denied_outside(
    daemon: tuple[RunningServer, Path],
) -> None:
    server, _ = daemon
    main = client(server, MAIN_ID, MAIN_SECRET)
    main.put_object(Bucket=INBOX, Key=OTHER + "secret.txt", Body=b"other tenant")
    writer = client(server, WRITER_ID, WRITER_SECRET)
    before = snapshot(server.bucket_dir(INBOX))

    writer.put_object(Bucket=INBOX, Key=MINE + "a.txt", Body=b"mine")
    assert writer.get_object(Bucket=INBOX, Key=MINE + "a.txt")["Body"].read() == b"mine"
    assert writer.head_object(Bucket=INBOX, Key=MINE + "a.txt")["ContentLength"] == 4
    listed = writer.list_objects_v2(Bucket=INBOX, Prefix=MINE)
    assert [o["Key"] for o in listed["Contents"]] == [MINE + "a.txt"]
    assert {b["Name"] for b in writer.list_buckets()["Buckets"]} == {INBOX, LONGTERM}

    after_put = snapshot(server.bucket_dir(INBOX))
    assert set(after_put) - set(before) == {MINE + "a.txt"}
    assert code_of(lambda: writer.put_object(Bucket=INBOX, Key=OTHER + "x", Body=b"x")) == (
        "AccessDenied"
    )
    assert code_of(lambda: writer.get_object(Bucket=INBOX, Key=OTHER + "secret.txt")) == (
        "AccessDenied"
    )
    assert code_of(lambda: writer.delete_object(Bucket=INBOX, Key=MINE + "a.txt")) == (
        "AccessDenied"
    )
    assert code_of(lambda: writer.list_objects_v2(Bucket=INBOX)) == "AccessDenied"
    assert code_of(lambda: writer.list_objects(Bucket=INBOX, Prefix="company_")) == "AccessDenied"
    assert code_of(lambda: writer.get_bucket_cors(Bucket=INBOX)) == "AccessDenied"
    assert code_of(
        lambda: writer.create_multipart_upload(Bucket=INBOX, Key=OTHER + "big")
    ) == "AccessDenied"
    assert snapshot(server.bucket_dir(INBOX)) == after_put  # refusals changed nothing


def test_bucket_limited_key_cannot_touch_the_other_bucket(
    daemon: tuple[RunningServer, Path],
) -> None:
    server, _ = daemon
    main = client(server, MAIN_ID, MAIN_SECRET)
    main.put_object(Bucket=LONGTERM, Key=MINE + "l.txt", Body=b"l")
    reader = client(server, READER_ID, READER_SECRET)
    assert code_of(lambda: reader.get_object(Bucket=LONGTERM, Key=MINE + "l.txt")) == (
        "AccessDenied"
    )
    assert code_of(lambda: reader.put_object(Bucket=INBOX, Key=MINE + "r", Body=b"")) == (
        "AccessDenied"
    )


def test_copy_needs_read_on_the_source(daemon: tuple[RunningServer, Path]) -> None:
    server, _ = daemon
    main = client(server, MAIN_ID, MAIN_SECRET)
    main.put_object(Bucket=INBOX, Key=OTHER + "src.txt", Body=b"theirs")
    main.put_object(Bucket=INBOX, Key=MINE + "src.txt", Body=b"ours")
    writer = client(server, WRITER_ID, WRITER_SECRET)
    copy = {"Bucket": INBOX, "Key": MINE + "copy.txt"}
    assert code_of(
        lambda: writer.copy_object(CopySource={"Bucket": INBOX, "Key": OTHER + "src.txt"}, **copy)
    ) == "AccessDenied"
    assert code_of(
        lambda: writer.copy_object(CopySource={"Bucket": INBOX, "Key": OTHER + "nope"}, **copy)
    ) == "AccessDenied"  # the same answer whether or not the source exists
    writer.copy_object(CopySource={"Bucket": INBOX, "Key": MINE + "src.txt"}, **copy)
    assert writer.get_object(**copy)["Body"].read() == b"ours"
    upload = writer.create_multipart_upload(**copy)["UploadId"]
    assert code_of(
        lambda: writer.upload_part_copy(
            CopySource={"Bucket": INBOX, "Key": OTHER + "src.txt"},
            UploadId=upload,
            PartNumber=1,
            **copy,
        )
    ) == "AccessDenied"
    writer.abort_multipart_upload(UploadId=upload, **copy)


def test_delete_objects_refuses_each_key_outside_the_scope(
    daemon: tuple[RunningServer, Path],
) -> None:
    server, _ = daemon
    main = client(server, MAIN_ID, MAIN_SECRET)
    for key in (MINE + "d1", "company_7/plant_9/d2", OTHER + "d3"):
        main.put_object(Bucket=INBOX, Key=key, Body=b"d")
    reader = client(server, READER_ID, READER_SECRET, request_checksum_calculation="when_supported")
    result = reader.delete_objects(
        Bucket=INBOX,
        Delete={"Objects": [{"Key": MINE + "d1"}, {"Key": "company_7/plant_9/d2"},
                            {"Key": OTHER + "d3"}]},
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == [MINE + "d1", "company_7/plant_9/d2"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [(OTHER + "d3", "AccessDenied")]
    assert main.head_object(Bucket=INBOX, Key=OTHER + "d3")["ContentLength"] == 1


@pytest.mark.parametrize("signature", ["s3v4", "s3"])
def test_presigned_urls_of_a_scoped_key_are_limited_the_same_way(
    daemon: tuple[RunningServer, Path], signature: str
) -> None:
    server, _ = daemon
    main = client(server, MAIN_ID, MAIN_SECRET)
    main.put_object(Bucket=INBOX, Key=OTHER + "p.txt", Body=b"theirs")
    main.put_object(Bucket=INBOX, Key=MINE + "p.txt", Body=b"ours")
    writer = client(
        server, WRITER_ID, WRITER_SECRET, signature_version=signature
    )

    def fetch(key: str) -> tuple[int, bytes]:
        url = writer.generate_presigned_url(
            "get_object", Params={"Bucket": INBOX, "Key": key}, ExpiresIn=300
        )
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
                return answer.status, answer.read()
        except HTTPError as error:
            return error.code, error.read()

    assert fetch(MINE + "p.txt") == (200, b"ours")
    status, body = fetch(OTHER + "p.txt")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


@pytest.mark.parametrize("signature", ["s3v4", "default"])
def test_presigned_post_of_a_scoped_key_is_limited_by_its_final_key(
    daemon: tuple[RunningServer, Path], signature: str
) -> None:
    server, _ = daemon
    before = snapshot(server.bucket_dir(INBOX))
    # The policy lets the browser pick any key under company_ (starts-with); the scope does not.
    form = presign(
        server, MINE + "${filename}", signature=signature,
        conditions=[["starts-with", "$key", "company_"]],
        access_key=WRITER_ID, secret_key=WRITER_SECRET,
    )  # fmt: skip
    escape = replace(form, "key", OTHER + "${filename}")
    answer = post(server, Body(escape, b"escape", filename="x.png"))
    assert answer.status == 403 and answer.error()["Code"] == "AccessDenied", answer
    assert snapshot(server.bucket_dir(INBOX)) == before
    answer = post(server, Body(form, b"fine", filename="x.png"))
    assert answer.status == 204, answer
    assert (server.bucket_dir(INBOX) / MINE / "x.png").read_bytes() == b"fine"


def test_sighup_reloads_and_a_bad_file_keeps_the_old_keys(
    daemon: tuple[RunningServer, Path],
) -> None:
    server, creds = daemon
    writer = client(server, WRITER_ID, WRITER_SECRET)
    writer.put_object(Bucket=INBOX, Key=MINE + "h.txt", Body=b"1")

    bad_secret = "bad-file-secret-that-must-not-be-logged"
    bad = [{**SCOPES[0], "secret_access_key": bad_secret, "operations": ["fly"]}]
    creds.write_text(json.dumps(bad))
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "scoped credentials not reloaded" in server.log_text)
    assert server.process.poll() is None
    writer.put_object(Bucket=INBOX, Key=MINE + "h.txt", Body=b"2")  # old keys still in use
    assert bad_secret not in server.log_text

    newcomer_id, newcomer_secret = "PLANT8WRITER", "newcomer-secret-0123456789abcdef"
    creds.write_text(json.dumps([{
        "access_key_id": newcomer_id, "secret_access_key": newcomer_secret,
        "prefixes": [OTHER], "operations": ["write"],
    }]))  # fmt: skip
    server.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "scoped credentials reloaded" in server.log_text)
    newcomer = client(server, newcomer_id, newcomer_secret)
    newcomer.put_object(Bucket=INBOX, Key=OTHER + "n.txt", Body=b"n")
    assert code_of(lambda: writer.put_object(Bucket=INBOX, Key=MINE + "h.txt", Body=b"3")) == (
        "InvalidAccessKeyId"
    )
    assert newcomer_secret not in server.log_text


def test_file_change_is_picked_up_without_a_signal(daemon: tuple[RunningServer, Path]) -> None:
    server, creds = daemon
    writer = client(server, WRITER_ID, WRITER_SECRET)
    tmp = creds.with_suffix(".new")
    tmp.write_text(json.dumps([{**SCOPES[0], "prefixes": [OTHER]}]))
    os.replace(tmp, creds)  # a new inode: seen even when the mtime is in the same tick

    def moved() -> bool:
        try:
            writer.put_object(Bucket=INBOX, Key=OTHER + "moved.txt", Body=b"m")
        except ClientError:
            return False
        return True

    assert wait_until(moved, timeout=5)
    assert code_of(lambda: writer.put_object(Bucket=INBOX, Key=MINE + "m", Body=b"")) == (
        "AccessDenied"
    )


def test_a_bad_credentials_file_stops_the_start(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    creds = tmp_path / "bad.json"
    creds.write_text(json.dumps([{**SCOPES[0], "prefixes": ["company_7"]}]))
    with pytest.raises(RuntimeError, match="must end with '/'") as info:
        start_server(PLANTCDN_CREDENTIALS_FILE=str(creds))
    assert WRITER_SECRET not in str(info.value)

