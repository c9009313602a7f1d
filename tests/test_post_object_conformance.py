"""POST Object form fields held to what AWS documents, against the real daemon.

Each test posts a boto3-presigned form (every field covered by an ``eq``
condition) and checks what a browser or a later GetObject sees: status, S3
error ``Code``, response headers, stored bytes, and that a refusal leaves the
bucket unchanged.  Pages followed: API Reference "POST Object" (form fields,
responses), PutObject, PutObjectTagging.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, RunningServer
from test_post_object import (
    PHOTO,
    Answer,
    Body,
    Field,
    inbox,
    md5_etag,
    post,
    presign,
    refused,
)

__all__ = ["inbox"]  # the fixture, imported for pytest

SHA256 = base64.b64encode(hashlib.sha256(PHOTO).digest()).decode()
CRC32 = base64.b64encode(zlib.crc32(PHOTO).to_bytes(4, "big")).decode()
MD5 = base64.b64encode(hashlib.md5(PHOTO).digest()).decode()


def signed(server: RunningServer, key: str, fields: dict[str, str]) -> list[Field]:
    """A form whose policy allows exactly *fields* (each as an eq condition)."""
    conditions: list[Any] = [{name: value} for name, value in fields.items()]
    return presign(server, key, fields=fields, conditions=conditions)


def tagging_xml(*tags: tuple[str, str]) -> str:
    inner = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in tags)
    return f"<Tagging><TagSet>{inner}</TagSet></Tagging>"


def s3(server: RunningServer) -> Any:
    return server.client()


# ---------------------------------------------------------------------------
# 1. Content-MD5


def test_matching_content_md5_is_stored(server: RunningServer, tenant: str) -> None:
    """A Content-MD5 field that matches the file: 204 and the file is stored."""
    answer = post(server, Body(signed(server, f"{tenant}/md5.png", {"Content-MD5": MD5})))
    assert answer.status == 204, answer
    assert (server.bucket_dir(INBOX) / tenant / "md5.png").read_bytes() == PHOTO


def test_content_md5_mismatch_is_bad_digest(
    server: RunningServer, tenant: str, inbox: dict[str, bytes]
) -> None:
    """A Content-MD5 field of other bytes: 400 BadDigest, nothing stored."""
    other = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    form = signed(server, f"{tenant}/md5bad.png", {"Content-MD5": other})
    refused(server, inbox, Body(form), 400, "BadDigest")


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_content_md5_is_invalid_digest(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], value: str
) -> None:
    """A Content-MD5 field that is not a base64 MD5: 400 InvalidDigest, nothing stored."""
    form = signed(server, f"{tenant}/md5odd.png", {"Content-MD5": value})
    refused(server, inbox, Body(form), 400, "InvalidDigest")


# ---------------------------------------------------------------------------
# 2. tagging


def test_tagging_field_is_read_back_by_get_object_tagging(
    server: RunningServer, tenant: str
) -> None:
    """A <Tagging> field's tags come back from GetObjectTagging, ${filename} expanded."""
    xml = tagging_xml(("plant", "fern & co"), ("source", "${filename}"))
    xml = xml.replace("fern & co", "fern &amp; co")
    form = signed(server, f"{tenant}/t/${{filename}}", {"tagging": xml})
    answer = post(server, Body(form, filename="a&b <1>.png"))
    assert answer.status == 204, answer
    got = s3(server).get_object_tagging(Bucket=INBOX, Key=f"{tenant}/t/a&b <1>.png")
    assert got["TagSet"] == [
        {"Key": "plant", "Value": "fern & co"},
        {"Key": "source", "Value": "a&b <1>.png"},
    ]


def test_tagging_field_reads_back_like_the_tagging_header(
    server: RunningServer, tenant: str
) -> None:
    """The same tag set sent as a POST field and as PutObject's x-amz-tagging reads back equal."""
    tags = [("k 1", "v/1"), ("k2", "")]
    form = signed(server, f"{tenant}/post.png", {"tagging": tagging_xml(*tags)})
    assert post(server, Body(form)).status == 204
    client = s3(server)
    client.put_object(Bucket=INBOX, Key=f"{tenant}/put.png", Body=PHOTO, Tagging="k%201=v%2F1&k2=")
    from_post = client.get_object_tagging(Bucket=INBOX, Key=f"{tenant}/post.png")["TagSet"]
    from_put = client.get_object_tagging(Bucket=INBOX, Key=f"{tenant}/put.png")["TagSet"]
    assert from_post == from_put == [{"Key": "k 1", "Value": "v/1"}, {"Key": "k2", "Value": ""}]


def _put_object_tagging_error(
    server: RunningServer, tenant: str, tags: list[tuple[str, str]]
) -> dict[str, str]:
    """What PutObjectTagging answers for *tags* (on an object made for the purpose)."""
    client = s3(server)
    key = f"{tenant}/tagged-by-put.png"
    client.put_object(Bucket=INBOX, Key=key, Body=b"x")
    with pytest.raises(ClientError) as caught:
        client.put_object_tagging(
            Bucket=INBOX,
            Key=key,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags]},
        )
    error: dict[str, str] = caught.value.response["Error"]
    return error


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([("a", "1"), ("a", "2")], "InvalidTag"),
        ([(f"k{i}", "v") for i in range(11)], "BadRequest"),
        ([("aws:reserved", "v")], "InvalidTag"),
    ],
    ids=["duplicate-keys", "eleven-tags", "aws-prefix"],
)
def test_invalid_tag_set_is_refused_as_put_object_tagging_refuses_it(
    server: RunningServer,
    tenant: str,
    inbox: dict[str, bytes],
    tags: list[tuple[str, str]],
    code: str,
) -> None:
    """A tag set PutObjectTagging refuses is refused by POST with the same code and message."""
    expected = _put_object_tagging_error(server, tenant, tags)
    before = dict(inbox)
    before.update({f"{tenant}/tagged-by-put.png": b"x"})
    form = signed(server, f"{tenant}/badtags.png", {"tagging": tagging_xml(*tags)})
    error = refused(server, before, Body(form), 400, code)
    assert error["Message"] == expected["Message"]
    assert expected["Code"] == code


@pytest.mark.parametrize(
    "xml",
    ["plant=fern", "<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", "<Tagging>"],
    ids=["header-form", "no-value", "unclosed"],
)
def test_malformed_tagging_xml(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], xml: str
) -> None:
    """A tagging field that is not a <Tagging><TagSet> document: 400 MalformedXML."""
    form = signed(server, f"{tenant}/badxml.png", {"tagging": xml})
    refused(server, inbox, Body(form), 400, "MalformedXML")


# ---------------------------------------------------------------------------
# 3. ${filename} in the redirect


@pytest.mark.parametrize("field", ["success_action_redirect", "redirect"])
def test_redirect_expands_filename(server: RunningServer, tenant: str, field: str) -> None:
    """${filename} in the redirect URL becomes the file's name (percent-encoded)."""
    target = "http://localhost:8000/done/${filename}?name=${filename}"
    form = presign(
        server,
        f"{tenant}/r/${{filename}}",
        fields={field: target},
        conditions=[["starts-with", f"${field}", "http://localhost:8000/done/"]],
    )
    answer = post(server, Body(form, filename="C:\\photos\\my leaf&1.png"))
    assert answer.status == 303, answer
    location = urlsplit(answer.headers["location"])
    assert location.path == "/done/my%20leaf%261.png"
    query = parse_qs(location.query)
    assert query["name"] == ["my leaf&1.png"]
    assert query["key"] == [f"{tenant}/r/my leaf&1.png"]
    assert (server.bucket_dir(INBOX) / tenant / "r" / "my leaf&1.png").read_bytes() == PHOTO


# ---------------------------------------------------------------------------
# 4. x-amz-checksum-algorithm


def test_checksum_algorithm_with_its_value_is_accepted(server: RunningServer, tenant: str) -> None:
    """x-amz-checksum-algorithm with the matching value: stored with that checksum."""
    form = signed(
        server,
        f"{tenant}/alg.png",
        {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": SHA256},
    )
    answer = post(server, Body(form))
    assert answer.status == 204, answer
    head = s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/alg.png", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == SHA256


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"x-amz-checksum-algorithm": "SHA256"}, "InvalidRequest"),
        ({"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-sha256": SHA256}, "BadDigest"),
        ({"x-amz-checksum-algorithm": "MD4"}, "InvalidRequest"),
    ],
    ids=["no-value", "other-algorithm", "unknown-algorithm"],
)
def test_checksum_algorithm_without_its_value_is_refused(
    server: RunningServer,
    tenant: str,
    inbox: dict[str, bytes],
    fields: dict[str, str],
    code: str,
) -> None:
    """x-amz-checksum-algorithm without that algorithm's value: 400, nothing stored."""
    refused(server, inbox, Body(signed(server, f"{tenant}/noalg.png", fields)), 400, code)


# ---------------------------------------------------------------------------
# 5. x-amz-storage-class


def test_invalid_storage_class_is_refused_as_put_object_refuses_it(
    server: RunningServer, tenant: str, inbox: dict[str, bytes]
) -> None:
    """An unknown x-amz-storage-class field: 400 InvalidStorageClass, as PutObject answers."""
    with pytest.raises(ClientError) as caught:
        s3(server).put_object(Bucket=INBOX, Key=f"{tenant}/sc.png", Body=b"x", StorageClass="FAST")
    put_error = caught.value.response["Error"]
    form = signed(server, f"{tenant}/sc.png", {"x-amz-storage-class": "FAST"})
    error = refused(server, inbox, Body(form), 400, "InvalidStorageClass")
    assert (error["Code"], error["Message"]) == (put_error["Code"], put_error["Message"])
    assert error["StorageClassRequested"] == "FAST"


def test_valid_storage_class_is_stored(server: RunningServer, tenant: str) -> None:
    """A known x-amz-storage-class field is stored and reported by HeadObject."""
    form = signed(server, f"{tenant}/ia.png", {"x-amz-storage-class": "STANDARD_IA"})
    assert post(server, Body(form)).status == 204
    assert s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/ia.png")["StorageClass"] == (
        "STANDARD_IA"
    )


# ---------------------------------------------------------------------------
# 6. Success headers


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({}, 204),
        ({"success_action_status": "200"}, 200),
        ({"success_action_status": "201"}, 201),
        ({"success_action_redirect": "http://localhost:8000/ok"}, 303),
    ],
    ids=["204", "200", "201", "303"],
)
def test_success_carries_sse_and_checksum_headers(
    server: RunningServer, tenant: str, extra: dict[str, str], status: int
) -> None:
    """Every success answer says AES256 and echoes the checksum that was stored."""
    form = signed(server, f"{tenant}/h.png", {"x-amz-checksum-crc32": CRC32, **extra})
    answer: Answer = post(server, Body(form))
    assert answer.status == status, answer
    assert answer.headers["x-amz-server-side-encryption"] == "AES256"
    assert answer.headers["x-amz-checksum-crc32"] == CRC32
    assert answer.headers["etag"] == md5_etag(PHOTO)


def test_success_without_checksum_has_no_checksum_header(
    server: RunningServer, tenant: str
) -> None:
    """Without a checksum field the answer names no checksum, but still says AES256."""
    answer = post(server, Body(signed(server, f"{tenant}/plain.png", {})))
    assert answer.status == 204, answer
    assert answer.headers["x-amz-server-side-encryption"] == "AES256"
    assert not [name for name in answer.headers if name.startswith("x-amz-checksum-")]


def test_conditions_may_name_the_expanded_filename(server: RunningServer, tenant: str) -> None:
    """"All variables within the form are expanded before the policy is validated"
    (User Guide, HTML forms): an eq condition on the key and a metadata field as they
    read once ``${filename}`` is replaced holds."""
    form = presign(
        server,
        f"{tenant}/m/${{filename}}",
        fields={"x-amz-meta-original": "${filename}"},
        conditions=[
            ["eq", "$key", f"{tenant}/m/leaf.png"],
            {"x-amz-meta-original": "leaf.png"},
        ],
    )
    answer = post(server, Body(form, filename="leaf.png"))
    assert answer.status == 204, answer
    head = s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/m/leaf.png")
    assert head["Metadata"] == {"original": "leaf.png"}
    refused_form = presign(
        server, f"{tenant}/m/${{filename}}", conditions=[["eq", "$key", f"{tenant}/m/leaf.png"]]
    )
    assert post(server, Body(refused_form, filename="other.png")).status == 403


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"x-amz-server-side-encryption": "bogus"}, 400, "InvalidArgument"),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, 400, "InvalidRequest"),
        ({"x-amz-object-lock-legal-hold": "ON"}, 400, "InvalidRequest"),
        ({"x-amz-website-redirect-location": "elsewhere"}, 400, "InvalidRedirectLocation"),
    ],
)
def test_object_settings_fields_are_checked_as_putobject_headers(
    server: RunningServer, tenant: str, inbox: dict[str, bytes],
    fields: dict[str, str], status: int, code: str,
) -> None:
    form = signed(server, f"{tenant}/settings.png", fields)
    refused(server, inbox, Body(form), status, code)


def test_website_redirect_field_is_stored(server: RunningServer, tenant: str) -> None:
    form = signed(server, f"{tenant}/r.png", {"x-amz-website-redirect-location": "/x.html"})
    assert post(server, Body(form)).status == 204
    head = s3(server).head_object(Bucket=INBOX, Key=f"{tenant}/r.png")
    assert head["WebsiteRedirectLocation"] == "/x.html"
