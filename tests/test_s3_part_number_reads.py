"""GetObject / HeadObject ``?partNumber=N``: one part of an object, as a ranged read.

Clients that download in parallel by part (HEAD for ``PartsCount``, then a GET per
part) must get each part's bytes, never the whole object again.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, RunningServer

from plantcdn.errors import S3Error
from plantcdn.partnumber import part_runs, part_span

MiB = 1024 * 1024


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_part_sizes_are_kept_as_runs() -> None:
    assert part_runs([8, 8, 8, 3]) == [[8, 3], [3, 1]]
    assert part_runs([5, 6, 6]) == [[5, 1], [6, 2]]
    assert part_runs([]) == []


@pytest.mark.parametrize(
    ("number", "span"),
    [("1", (0, 8)), ("3", (16, 8)), ("4", (24, 3))],
)
def test_a_part_number_names_its_span(number: str, span: tuple[int, int]) -> None:
    assert part_span(number, 27, [[8, 3], [3, 1]], 4) == span


def test_an_empty_last_part_has_no_bytes() -> None:
    assert part_span("2", 8, [[8, 1], [0, 1]], 2) == (8, 0)


@pytest.mark.parametrize(
    ("number", "code"),
    [("5", "InvalidPartNumber"), ("0", "InvalidArgument"), ("10001", "InvalidArgument"),
     ("x", "InvalidArgument"), ("\u00b2", "InvalidArgument"), ("9" * 5000, "InvalidArgument")],
)  # fmt: skip
def test_part_numbers_out_of_bounds_are_refused(number: str, code: str) -> None:
    with pytest.raises(S3Error) as info:
        part_span(number, 27, [[8, 3], [3, 1]], 4)
    assert info.value.code == code


@pytest.fixture
def three_parts(server: RunningServer, tenant: str) -> tuple[Any, str, list[bytes]]:
    s3: Any = server.client()
    key = f"{tenant}/parts.bin"
    parts = [bytes([1]) * (5 * MiB), bytes([2]) * (5 * MiB), b"tail!!!"]
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    done = []
    for number, body in enumerate(parts, start=1):
        etag = s3.upload_part(
            Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=INBOX, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    return s3, key, parts


def test_each_part_of_a_multipart_object_reads_back_alone(
    three_parts: tuple[Any, str, list[bytes]],
) -> None:
    s3, key, parts = three_parts
    total = sum(len(p) for p in parts)
    start = 0
    for number, body in enumerate(parts, start=1):
        got = s3.get_object(Bucket=INBOX, Key=key, PartNumber=number)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{total}"
        assert got["PartsCount"] == 3
        assert got["Body"].read() == body
        head = s3.head_object(Bucket=INBOX, Key=key, PartNumber=number)
        assert head["ContentLength"] == len(body)
        assert head["PartsCount"] == 3
        start += len(body)
    whole = s3.head_object(Bucket=INBOX, Key=key)
    assert "PartsCount" not in whole  # S3 sends the count only for a partNumber read


def test_part_reads_refuse_what_s3_refuses(three_parts: tuple[Any, str, list[bytes]]) -> None:
    s3, key, _ = three_parts
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=key, PartNumber=4)
    assert error_of(info) == (416, "InvalidPartNumber")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=key, PartNumber=1, Range="bytes=0-1")
    assert error_of(info) == (400, "InvalidRequest")


def test_a_plain_object_is_its_own_single_part(server: RunningServer, tenant: str) -> None:
    s3: Any = server.client()
    key = f"{tenant}/plain.bin"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"0123456789")
    got = s3.get_object(Bucket=INBOX, Key=key, PartNumber=1)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes 0-9/10"
    assert got["Body"].read() == b"0123456789"
    assert "PartsCount" not in got
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=INBOX, Key=key, PartNumber=2)
    assert error_of(info) == (416, "InvalidPartNumber")
