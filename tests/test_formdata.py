"""The streaming POST Object reader: S3's form rules, bounds, and split-invariance.

Bodies are built the way clients build them (urllib3's encoder, which requests
uses; boto3's presigned fields) and fed in arbitrary pieces.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

from plantcdn.errors import S3Error
from plantcdn.formdata import (
    MAX_PRE_DATA_BYTES,
    Field,
    FileData,
    FileEnd,
    FileStart,
    FormEvent,
    FormReader,
)

BOUNDARY = "plantcdnBoundary7MA4YWxkTrZu0gW"


def body_of(parts: Sequence[tuple[str, Any]], boundary: str = BOUNDARY) -> tuple[bytes, str]:
    return encode_multipart_formdata(list(parts), boundary=boundary)


def pieces(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(body)})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def read(content_type: str, chunks: Iterable[bytes], **options: Any) -> list[FormEvent]:
    """All events, the file's pieces joined so differently split bodies compare equal."""
    reader = FormReader(content_type, **options)
    raw: list[FormEvent] = []
    for chunk in chunks:
        raw += reader.feed(chunk)
    raw += reader.finish()
    events: list[FormEvent] = []
    for event in raw:
        if isinstance(event, FileData) and events and isinstance(events[-1], FileData):
            events[-1] = FileData(events[-1].data + event.data)
        else:
            events.append(event)
    return events


def refusal(content_type: str, chunks: Iterable[bytes], **options: Any) -> S3Error:
    with pytest.raises(S3Error) as info:
        read(content_type, chunks, **options)
    return info.value


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


FORM = [
    ("key", "uploads/${filename}"),
    ("Content-Type", "image/png"),
    ("x-amz-meta-plant", "monstera – ünïcode"),
    ("Policy", "eyJleHBpcmF0aW9uIjogIjIwMjYifQ=="),
    ("file", ("leaf.png", b"\x89PNG\r\n--not-a-boundary\r\n\x00\xff" * 50, "image/png")),
]
EXPECTED = [
    Field("key", "uploads/${filename}"),
    Field("content-type", "image/png"),
    Field("x-amz-meta-plant", "monstera – ünïcode"),
    Field("policy", "eyJleHBpcmF0aW9uIjogIjIwMjYifQ=="),
    FileStart("leaf.png", "image/png"),
    FileData(b"\x89PNG\r\n--not-a-boundary\r\n\x00\xff" * 50),
    FileEnd(),
]


# --------------------------------------------------------------------------
# Accepted bodies


def test_browser_style_body_gives_fields_then_the_file() -> None:
    """Fields (names lower-cased) come first, then FileStart, the bytes, FileEnd."""
    body, content_type = body_of(FORM)
    assert read(content_type, [body]) == EXPECTED


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    """Feeding single bytes changes nothing but how the file is cut."""
    body, content_type = body_of(FORM)
    assert read(content_type, bytewise(body)) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40),
    content=st.binary(max_size=600)
    | st.sampled_from([b"", b"\r\n--", b"\r\n--" + BOUNDARY.encode()[:-1]]),
)
def test_random_split_points_give_identical_events(cuts: list[int], content: bytes) -> None:
    """Any split of the body, any file content (boundary look-alikes included), same events."""
    parts = [*FORM[:-1], ("file", ("leaf.png", content, "image/png"))]
    body, content_type = body_of(parts)
    expected = [*EXPECTED[:4], FileStart("leaf.png", "image/png")]
    if content:
        expected.append(FileData(content))
    expected.append(FileEnd())
    assert read(content_type, pieces(body, cuts)) == expected


def test_file_data_is_passed_through_in_bounded_pieces() -> None:
    """A 4 MiB file fed in 64 KiB steps comes back in pieces no larger than a step."""
    content = os.urandom(4 * 1024 * 1024)
    body, content_type = body_of([("key", "k"), ("file", ("big.bin", content, "application/x"))])
    reader = FormReader(content_type)
    step = 64 * 1024
    received = bytearray()
    largest = 0
    for offset in range(0, len(body), step):
        for event in reader.feed(body[offset : offset + step]):
            if isinstance(event, FileData):
                largest = max(largest, len(event.data))
                received += event.data
    assert reader.finish() == []
    assert bytes(received) == content
    assert largest <= step


def test_fields_after_the_file_are_ignored() -> None:
    """Parts after the file emit nothing, as S3 ignores "any fields below it"."""
    body, content_type = body_of([*FORM, ("acl", "public-read"), ("file", ("2.txt", b"x", "a/b"))])
    assert read(content_type, [body]) == EXPECTED
    assert read(content_type, bytewise(body)) == EXPECTED


def test_anything_after_the_file_is_consumed_even_if_malformed() -> None:
    """Garbage after the file's closing boundary is discarded, not refused."""
    body, content_type = body_of(FORM)
    for tail in (
        b"tail data that should be ignored",
        b"\r\n--" + BOUNDARY.encode() + b"\r\nbroken",
    ):
        assert read(content_type, [body + tail]) == EXPECTED
    truncated_after_file = body_of([*FORM, ("acl", "x" * 100)])[0][:-60]
    assert read(content_type, [truncated_after_file]) == EXPECTED


def test_filename_bearing_non_file_parts_are_fields() -> None:
    """A part named other than "file" is a field even with a filename parameter."""
    body, content_type = body_of(
        [
            ("key", ("key.txt", b"uploads/a.txt", "text/plain")),
            ("file", ("a.txt", b"A", "text/plain")),
        ]
    )
    assert read(content_type, [body]) == [
        Field("key", "uploads/a.txt"),
        FileStart("a.txt", "text/plain"),
        FileData(b"A"),
        FileEnd(),
    ]


def test_file_part_name_is_case_insensitive_and_filename_optional() -> None:
    """A part named FILE without a filename (a text area) is the upload, filename ""."""
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="KEY"\r\n\r\n'
        "k\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="FILE"\r\n\r\n'
        "typed text\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()
    assert read(f"Multipart/Form-Data; boundary={BOUNDARY}", [body]) == [
        Field("key", "k"),
        FileStart("", None),
        FileData(b"typed text"),
        FileEnd(),
    ]


def test_empty_file_gives_start_and_end_only() -> None:
    """A zero-byte upload is FileStart then FileEnd."""
    body, content_type = body_of([("key", "k"), ("file", ("empty", b"", "text/plain"))])
    assert read(content_type, [body]) == [
        Field("key", "k"),
        FileStart("empty", "text/plain"),
        FileEnd(),
    ]


def test_repeated_fields_are_joined_with_commas() -> None:
    """Same-named fields reach the policy as one comma-separated value (HTML Forms page)."""
    body, content_type = body_of(
        [
            ("x-amz-meta-tag", "Ninja"),
            ("key", "k"),
            ("X-Amz-Meta-Tag", "Stallman"),
            ("file", ("f", b"1", "a/b")),
        ]
    )
    assert read(content_type, [body])[:2] == [
        Field("x-amz-meta-tag", "Ninja,Stallman"),
        Field("key", "k"),
    ]


def test_boto3_presigned_post_fields_arrive_as_sent() -> None:
    """boto3's generate_presigned_post fields, sent before the file, are read back lower-cased."""
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIAPLANTCDNTEST0001",
        aws_secret_access_key="secret",
        endpoint_url="http://127.0.0.1:9",
        config=BotoConfig(signature_version="s3v4"),
    )
    post = client.generate_presigned_post(
        "plantdb-inbox",
        "uploads/${filename}",
        Fields={"Content-Type": "text/plain"},
        Conditions=[{"Content-Type": "text/plain"}],
    )
    body, content_type = body_of(
        [*post["fields"].items(), ("file", ("n.txt", b"notes", "text/plain"))]
    )
    events = read(content_type, pieces(body, range(0, len(body), 7)))
    fields = {e.name: e.value for e in events if isinstance(e, Field)}
    assert fields == {name.lower(): value for name, value in post["fields"].items()}
    assert events[-3:] == [FileStart("n.txt", "text/plain"), FileData(b"notes"), FileEnd()]


# --------------------------------------------------------------------------
# Refusals


def _assert(error: S3Error, status: int, code: str) -> None:
    assert (error.status, error.code) == (status, code)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "", "multipart/mixed; boundary=abc"],
)
def test_other_content_type_is_precondition_failed(content_type: str) -> None:
    """A POST that is not multipart/form-data is 412 with S3's Condition element."""
    with pytest.raises(S3Error) as info:
        FormReader(content_type)
    _assert(info.value, 412, "PreconditionFailed")
    assert info.value.extra == {
        "Condition": "Bucket POST must be of the enclosure-type multipart/form-data"
    }


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary="])
def test_form_without_boundary_is_malformed(content_type: str) -> None:
    """multipart/form-data without a boundary parameter is MalformedPOSTRequest."""
    with pytest.raises(S3Error) as info:
        FormReader(content_type)
    _assert(info.value, 400, "MalformedPOSTRequest")


def test_body_without_file_part_is_invalid_argument() -> None:
    """A complete form with no file is S3's "exactly one file upload" refusal."""
    body, content_type = body_of(FORM[:-1])
    error = refusal(content_type, [body])
    _assert(error, 400, "InvalidArgument")
    assert error.message == "POST requires exactly one file upload per request."
    assert error.extra == {"ArgumentName": "file", "ArgumentValue": "0"}


@pytest.mark.parametrize("cut", [10, 200, -40, -3])
def test_truncated_body_is_malformed(cut: int) -> None:
    """A body whose framing ends early (in the fields or the file) is MalformedPOSTRequest."""
    body, content_type = body_of(FORM)
    _assert(refusal(content_type, [body[:cut]]), 400, "MalformedPOSTRequest")


def test_garbage_body_is_malformed() -> None:
    """Bytes that are not multipart framing are MalformedPOSTRequest."""
    _assert(
        refusal(f"multipart/form-data; boundary={BOUNDARY}", [b"hello, this is not a form"]),
        400,
        "MalformedPOSTRequest",
    )


def test_empty_body_is_malformed() -> None:
    """An empty body is MalformedPOSTRequest."""
    _assert(refusal(f"multipart/form-data; boundary={BOUNDARY}", []), 400, "MalformedPOSTRequest")


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_fields_over_20_kb_before_the_file_are_refused(feed: str) -> None:
    """More than 20 KB of form before the file is MaxPostPreDataLengthExceededError."""
    body, content_type = body_of(
        [("key", "k"), ("x-amz-meta-big", "x" * MAX_PRE_DATA_BYTES), *FORM[-1:]]
    )
    chunks = [body] if feed == "whole" else bytewise(body)
    _assert(refusal(content_type, chunks), 400, "MaxPostPreDataLengthExceededError")


def test_fields_just_under_20_kb_are_accepted() -> None:
    """A form whose fields stay under the limit is read."""
    body, content_type = body_of([("key", "k"), ("x-amz-meta-big", "x" * 19_000), *FORM[-1:]])
    assert read(content_type, [body])[1] == Field("x-amz-meta-big", "x" * 19_000)


def test_pre_file_limit_does_not_count_the_file() -> None:
    """A file far larger than 20 KB is fine; only what precedes it is bounded."""
    body, content_type = body_of([("key", "k"), ("file", ("f", b"z" * 100_000, "a/b"))])
    assert read(content_type, [body])[-2] == FileData(b"z" * 100_000)


def test_too_many_parts_is_malformed() -> None:
    """More parts than max_parts before the file is MalformedPOSTRequest."""
    parts = [(f"x-ignore-{i}", "") for i in range(20)]
    body, content_type = body_of([*parts, *FORM[-1:]])
    _assert(refusal(content_type, [body], max_parts=10), 400, "MalformedPOSTRequest")
    assert read(content_type, [body], max_parts=21)[-1] == FileEnd()


def test_field_value_that_is_not_utf8_is_malformed() -> None:
    """Field values must be UTF-8 ("The form and policy must be UTF-8 encoded")."""
    body, content_type = body_of([("key", b"\xff\xfe"), *FORM[-1:]])
    _assert(refusal(content_type, [body]), 400, "MalformedPOSTRequest")


def test_part_without_content_disposition_is_malformed() -> None:
    """A part with no Content-Disposition name cannot be a form field."""
    body = (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nvalue\r\n--{BOUNDARY}--\r\n").encode()
    _assert(
        refusal(f"multipart/form-data; boundary={BOUNDARY}", [body]), 400, "MalformedPOSTRequest"
    )


def test_reader_stays_refused_after_an_error() -> None:
    """After a refusal, further input is refused too: nothing half-parsed leaks through."""
    reader = FormReader(f"multipart/form-data; boundary={BOUNDARY}")
    with pytest.raises(S3Error):
        reader.feed(b"not a form at all")
    body, _ = body_of(FORM)
    with pytest.raises(S3Error):
        reader.feed(body)
    with pytest.raises(S3Error):
        reader.finish()
