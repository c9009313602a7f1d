"""POST Object against the real daemon, with fields from boto3's generate_presigned_post.

Every form is what Django hands a browser: ``generate_presigned_post`` with
SigV4 (``signature_version="s3v4"``) or botocore's default (SigV2 for POST).
Bodies are sent by a streaming multipart client (http.client fed a generator,
or a raw socket), never assembled in memory.  Each refusal is one change to a
valid form and is checked for status, S3 ``Code``, message, and that nothing
was written (bucket snapshot unchanged, no temporary file left).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import select
import socket
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config as BotoConfig
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot, temp_files, wait_until

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PHOTO = b"\x89PNG\r\n\x1a\n" + os.urandom(3000) + b"\r\n--not-a-boundary\r\n" + b"\x00" * 100
#: botocore's default signs POST forms with SigV2; "s3v4" asks for SigV4.
SIGNATURES = ["s3v4", "default"]

Field = tuple[str, str]


# ---------------------------------------------------------------------------
# Forms and a streaming multipart client


def presign(
    server: RunningServer,
    key: str,
    *,
    signature: str = "s3v4",
    fields: dict[str, str] | None = None,
    conditions: list[Any] | None = None,
    expires_in: int = 600,
    bucket: str = INBOX,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> list[Field]:
    """The form fields boto3 hands a browser, in boto3's order."""
    config = BotoConfig() if signature == "default" else BotoConfig(signature_version=signature)
    client: Any = boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=access_key or server.access_key,
        aws_secret_access_key=secret_key or server.secret_key,
        config=config,
    )
    post = client.generate_presigned_post(
        bucket,
        key,
        Fields=dict(fields or {}),
        Conditions=list(conditions or []),
        ExpiresIn=expires_in,
    )
    assert post["url"] == f"{server.url}/{bucket}"
    return list(post["fields"].items())


def replace(form: Sequence[Field], name: str, value: str | None) -> list[Field]:
    """The form with field *name* set to *value* (None: removed)."""
    out = [(n, v) for n, v in form if n.lower() != name.lower()]
    if value is not None:
        out.append((name, value))
    return out


class Body:
    """A multipart/form-data body produced piece by piece, with its exact length."""

    boundary = "----plantcdnTestBoundary" + uuid.uuid4().hex

    def __init__(
        self,
        fields: Sequence[Field],
        file: bytes | None = PHOTO,
        *,
        filename: str = "leaf.png",
        file_type: str = "image/png",
        after: Sequence[Field] = (),
        field_filenames: bool = False,
        file_size: int | None = None,
        piece: int = 64 * 1024,
    ) -> None:
        self.head = b"".join(self._field(n, v, field_filenames) for n, v in fields)
        self.file = file
        self.file_size = len(file) if file is not None else (file_size or 0)
        self.piece = piece
        if file is not None or file_size is not None:
            self.head += (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                f"Content-Type: {file_type}\r\n\r\n"
            ).encode()
            self.tail = b"\r\n" + b"".join(self._field(n, v, False) for n, v in after)
        else:
            self.file_size = 0
            self.tail = b""
        self.tail += f"--{self.boundary}--\r\n".encode()

    def _field(self, name: str, value: str, with_filename: bool) -> bytes:
        filename = '; filename="blob"' if with_filename else ""
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"{filename}\r\n\r\n'
            f"{value}\r\n"
        ).encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.file_size + len(self.tail)

    def file_pieces(self) -> Iterator[bytes]:
        if self.file is not None:
            for i in range(0, len(self.file), self.piece):
                yield self.file[i : i + self.piece]
        else:  # a large file that never exists in memory as a whole
            block = os.urandom(self.piece)
            left = self.file_size
            while left > 0:
                yield block[: min(left, self.piece)]
                left -= self.piece

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        yield from self.file_pieces()
        yield self.tail


class Answer:
    """Status, headers (lower-case names) and body of one response."""

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def error(self) -> dict[str, str]:
        root = ET.fromstring(self.body)
        assert root.tag == "Error", self.body
        return {child.tag: child.text or "" for child in root}

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.headers}, {self.body[:300]!r})"


def post(
    server: RunningServer,
    body: Body,
    *,
    bucket: str = INBOX,
    host: str | None = None,
    chunked: bool = False,
) -> Answer:
    """POST *body* the way a browser does, streaming it from the generator."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": body.content_type}
    if not chunked:
        headers["Content-Length"] = str(len(body))
    path = "/" if host else f"/{bucket}"
    if host:
        headers["Host"] = host
    try:
        try:
            conn.request("POST", path, body=iter(body), headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer is waiting
        response = conn.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


@pytest.fixture
def inbox(server: RunningServer) -> Iterator[dict[str, bytes]]:
    """The inbox as it was before the test, for "nothing written" checks."""
    before = snapshot(server.bucket_dir(INBOX))
    yield before


def assert_nothing_written(server: RunningServer, before: dict[str, bytes]) -> None:
    folder = server.bucket_dir(INBOX)
    assert wait_until(lambda: not temp_files(folder)), temp_files(folder)
    assert snapshot(folder) == before


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


# ---------------------------------------------------------------------------
# Success


@pytest.mark.parametrize("signature", SIGNATURES)
def test_201_returns_post_response_and_stores_the_file(
    server: RunningServer, tenant: str, signature: str
) -> None:
    """success_action_status 201: the XML PostResponse names the object, which is stored."""
    form = presign(
        server,
        f"{tenant}/photos/${{filename}}",
        signature=signature,
        fields={"success_action_status": "201", "Content-Type": "image/png"},
        conditions=[
            {"success_action_status": "201"},
            ["starts-with", "$key", f"{tenant}/photos/"],
            ["content-length-range", 1, 10 * 1024 * 1024],
            ["starts-with", "$Content-Type", "image/"],
        ],
    )
    answer = post(server, Body(form))
    key = f"{tenant}/photos/leaf.png"
    assert answer.status == 201, answer
    root = ET.fromstring(answer.body)
    assert root.tag == "PostResponse"
    got = {child.tag: child.text for child in root}
    assert got["Bucket"] == INBOX
    assert got["Key"] == key
    assert got["ETag"] == md5_etag(PHOTO)
    assert got["Location"] == f"http://localhost:8001/{INBOX}/{key}"
    assert answer.headers["etag"] == md5_etag(PHOTO)
    assert answer.headers["location"] == got["Location"]
    assert answer.headers["content-type"] == "application/xml"
    assert (server.bucket_dir(INBOX) / key).read_bytes() == PHOTO
    head = server.client().head_object(Bucket=INBOX, Key=key)  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(PHOTO)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_metadata_fields_are_stored(server: RunningServer, tenant: str, signature: str) -> None:
    """Content-Type comes from the form field, not the file part; Cache-Control,
    Content-Disposition and x-amz-meta-* are stored and come back from HeadObject."""
    fields = {
        "Content-Type": "image/webp",
        "Cache-Control": "max-age=31536000, immutable",
        "Content-Disposition": 'inline; filename="${filename}"',
        "x-amz-meta-plant-id": "42",
        "x-amz-meta-uploader": "django",
    }
    form = presign(
        server,
        f"{tenant}/m/${{filename}}",
        signature=signature,
        fields=fields,
        conditions=[
            ["starts-with", "$key", f"{tenant}/m/"],
            {"Content-Type": "image/webp"},
            ["starts-with", "$Cache-Control", "max-age="],
            ["starts-with", "$Content-Disposition", "inline"],
            ["starts-with", "$x-amz-meta-plant-id", ""],
            {"x-amz-meta-uploader": "django"},
        ],
    )
    answer = post(server, Body(form, filename="rose.webp", file_type="application/x-lie"))
    assert answer.status == 204, answer
    assert answer.body == b""
    key = f"{tenant}/m/rose.webp"
    head = server.client().head_object(Bucket=INBOX, Key=key)  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/webp"
    assert head["CacheControl"] == "max-age=31536000, immutable"
    assert head["ContentDisposition"] == 'inline; filename="rose.webp"'
    assert head["Metadata"] == {"plant-id": "42", "uploader": "django"}
    assert head["ETag"] == md5_etag(PHOTO)


def test_no_content_type_field_stores_s3_default(server: RunningServer, tenant: str) -> None:
    """Without a Content-Type field the object gets S3's default, whatever the file part says."""
    form = presign(server, f"{tenant}/plain.bin")
    assert post(server, Body(form, file_type="image/png")).status == 204
    head = server.client().head_object(Bucket=INBOX, Key=f"{tenant}/plain.bin")  # type: ignore[attr-defined]
    assert head["ContentType"] == "binary/octet-stream"


@pytest.mark.parametrize(
    ("status_field", "expected"), [("200", 200), ("204", 204), (None, 204), ("299", 204)]
)
def test_success_action_status(
    server: RunningServer, tenant: str, status_field: str | None, expected: int
) -> None:
    """200 and 204 answer with no body; a missing or invalid value answers 204, as S3."""
    fields = {} if status_field is None else {"success_action_status": status_field}
    conditions: list[Any] = [] if status_field is None else [fields]
    form = presign(server, f"{tenant}/s.png", fields=fields, conditions=conditions)
    answer = post(server, Body(form))
    assert answer.status == expected, answer
    assert answer.body == b""
    assert answer.headers["etag"] == md5_etag(PHOTO)
    assert answer.headers["location"].endswith(f"/{INBOX}/{tenant}/s.png")
    assert (server.bucket_dir(INBOX) / tenant / "s.png").read_bytes() == PHOTO


@pytest.mark.parametrize("signature", SIGNATURES)
def test_success_action_redirect_answers_303(
    server: RunningServer, tenant: str, signature: str
) -> None:
    """success_action_redirect: 303 to the URL with bucket, key and etag appended."""
    target = "http://localhost:8000/plants/uploaded?plant=7"
    form = presign(
        server,
        f"{tenant}/r.png",
        signature=signature,
        fields={"success_action_redirect": target},
        conditions=[{"success_action_redirect": target}],
    )
    answer = post(server, Body(form))
    assert answer.status == 303, answer
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "http",
        "localhost:8000",
        "/plants/uploaded",
    )
    query = parse_qs(location.query)
    assert query == {
        "plant": ["7"],
        "bucket": [INBOX],
        "key": [f"{tenant}/r.png"],
        "etag": [md5_etag(PHOTO)],
    }
    assert (server.bucket_dir(INBOX) / tenant / "r.png").read_bytes() == PHOTO


def test_virtual_hosted_post(server: RunningServer, tenant: str) -> None:
    """POST / with Host {bucket}.localhost stores into that bucket; Location is virtual-hosted."""
    form = presign(
        server,
        f"{tenant}/vh.png",
        fields={"success_action_status": "201"},
        conditions=[{"success_action_status": "201"}],
    )
    answer = post(server, Body(form), host=f"{INBOX}.localhost:{server.port}")
    assert answer.status == 201, answer
    got = {child.tag: child.text for child in ET.fromstring(answer.body)}
    assert got["Bucket"] == INBOX
    assert got["Location"] == f"http://{INBOX}.localhost:8001/{tenant}/vh.png"
    assert (server.bucket_dir(INBOX) / tenant / "vh.png").read_bytes() == PHOTO


def test_chunked_body_without_length(server: RunningServer, tenant: str) -> None:
    """A body sent with Transfer-Encoding: chunked (no Content-Length) is accepted."""
    form = presign(server, f"{tenant}/chunked.png")
    assert post(server, Body(form, piece=1000), chunked=True).status == 204
    assert (server.bucket_dir(INBOX) / tenant / "chunked.png").read_bytes() == PHOTO


def test_fields_after_the_file_are_ignored(server: RunningServer, tenant: str) -> None:
    """Fields after the file are ignored: not checked against the policy, not stored."""
    form = presign(server, f"{tenant}/late.png")
    after = [("x-amz-meta-late", "nope"), ("key", f"{tenant}/elsewhere.png")]
    answer = post(server, Body(form, after=after))
    assert answer.status == 204, answer
    head = server.client().head_object(Bucket=INBOX, Key=f"{tenant}/late.png")  # type: ignore[attr-defined]
    assert head["Metadata"] == {}
    assert not (server.bucket_dir(INBOX) / tenant / "elsewhere.png").exists()


@pytest.mark.parametrize("signature", SIGNATURES)
def test_field_names_are_case_insensitive(
    server: RunningServer, tenant: str, signature: str
) -> None:
    """KEY, POLICY, X-AMZ-SIGNATURE ... are the same fields as their lower-case spellings."""
    form = presign(
        server,
        f"{tenant}/case.png",
        signature=signature,
        fields={"Content-Type": "image/png"},
        conditions=[{"Content-Type": "image/png"}],
    )
    shouted = [(name.upper() if name != "file" else name, value) for name, value in form]
    assert post(server, Body(shouted)).status == 204
    head = server.client().head_object(Bucket=INBOX, Key=f"{tenant}/case.png")  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/png"


def test_field_parts_with_a_filename_are_fields(server: RunningServer, tenant: str) -> None:
    """A part not named "file" is a form field even when it carries a filename."""
    form = presign(server, f"{tenant}/blobs.png")
    assert post(server, Body(form, field_filenames=True)).status == 204
    assert (server.bucket_dir(INBOX) / tenant / "blobs.png").read_bytes() == PHOTO


def test_checksum_field_is_verified_and_stored(server: RunningServer, tenant: str) -> None:
    """A matching x-amz-checksum-sha256 field is accepted and reported by HeadObject."""
    value = base64.b64encode(hashlib.sha256(PHOTO).digest()).decode()
    form = presign(
        server,
        f"{tenant}/sum.png",
        fields={"x-amz-checksum-sha256": value},
        conditions=[{"x-amz-checksum-sha256": value}],
    )
    assert post(server, Body(form)).status == 204
    head = server.client().head_object(  # type: ignore[attr-defined]
        Bucket=INBOX, Key=f"{tenant}/sum.png", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == value


# ---------------------------------------------------------------------------
# Refusals: one change to a valid form each


def good_form(server: RunningServer, tenant: str, signature: str = "s3v4") -> list[Field]:
    return presign(
        server,
        f"{tenant}/up/${{filename}}",
        signature=signature,
        fields={"Content-Type": "image/png", "x-amz-meta-plant": "7"},
        conditions=[
            ["starts-with", "$key", f"{tenant}/up/"],
            ["eq", "$Content-Type", "image/png"],
            {"x-amz-meta-plant": "7"},
            ["content-length-range", 1, 1024 * 1024],
        ],
    )


def refused(
    server: RunningServer,
    before: dict[str, bytes],
    body: Body,
    status: int,
    code: str,
    message: str | None = None,
    **post_args: Any,
) -> dict[str, str]:
    answer = post(server, body, **post_args)
    assert answer.status == status, answer
    error = answer.error()
    assert error["Code"] == code, error
    if message is not None:
        assert error["Message"] == message, error
    assert error["RequestId"] == answer.headers["x-amz-request-id"]
    assert_nothing_written(server, before)
    return error


SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_wrong_signature(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A form signed with another secret: 403 SignatureDoesNotMatch."""
    form = presign(
        server,
        f"{tenant}/x.png",
        signature=signature,
        secret_key="not-the-secret-key-of-this-server",
    )
    error = refused(server, inbox, Body(form), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    assert error["AWSAccessKeyId"] == server.access_key


@pytest.mark.parametrize("signature", SIGNATURES)
def test_tampered_policy_breaks_the_signature(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A policy edited after signing (here: a wider key prefix) no longer matches."""
    form = presign(server, f"{tenant}/x.png", signature=signature)
    policy = dict(form)["policy"]
    other = presign(server, "company_9/plant_9/x.png", signature=signature)
    form = replace(form, "policy", dict(other)["policy"])
    refused(server, inbox, Body(form), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    assert dict(form)["policy"] != policy


@pytest.mark.parametrize("signature", SIGNATURES)
def test_unknown_access_key(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A key id the server does not know: 403 InvalidAccessKeyId."""
    form = presign(
        server, f"{tenant}/x.png", signature=signature, access_key="AKIANOTKNOWNHERE0000"
    )
    error = refused(
        server,
        inbox,
        Body(form),
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    )
    assert error["AWSAccessKeyId"] == "AKIANOTKNOWNHERE0000"


@pytest.mark.parametrize(
    ("signature", "field", "spelling"),
    [
        ("s3v4", "x-amz-signature", "X-Amz-Signature"),
        ("s3v4", "x-amz-credential", "X-Amz-Credential"),
        ("s3v4", "policy", "Policy"),
        ("s3v4", "key", "key"),
        ("default", "signature", "Signature"),
        ("default", "AWSAccessKeyId", "AWSAccessKeyId"),
        ("default", "policy", "Policy"),
    ],
)
def test_missing_field(
    server: RunningServer,
    tenant: str,
    inbox: dict[str, bytes],
    signature: str,
    field: str,
    spelling: str,
) -> None:
    """A required field left out: 400 InvalidArgument naming it, in S3's words."""
    form = replace(good_form(server, tenant, signature), field, None)
    error = refused(
        server,
        inbox,
        Body(form),
        400,
        "InvalidArgument",
        f"Bucket POST must contain a field named '{spelling}'.  "
        "If it is specified, please check the order of the fields.",
    )
    assert error["ArgumentName"] == spelling


def test_no_credentials_at_all(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """An anonymous form (key and file only) to a private bucket: 403 AccessDenied."""
    refused(
        server, inbox, Body([("key", f"{tenant}/anon.png")]), 403, "AccessDenied", "Access Denied"
    )


@pytest.mark.parametrize("signature", SIGNATURES)
def test_expired_policy(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A policy whose expiration has passed: 403 AccessDenied "Policy expired."."""
    form = presign(server, f"{tenant}/old.png", signature=signature, expires_in=-60)
    refused(
        server,
        inbox,
        Body(form),
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    )


@pytest.mark.parametrize("signature", SIGNATURES)
def test_extra_field_not_in_policy(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A field no condition covers: 403 "Extra input fields: ..."; x-ignore-* is exempt."""
    form = good_form(server, tenant, signature) + [("x-amz-meta-sneaky", "1")]
    refused(
        server,
        inbox,
        Body(form),
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky",
    )
    ignored = good_form(server, tenant, signature) + [("x-ignore-csrf", "token")]
    assert post(server, Body(ignored)).status == 204


@pytest.mark.parametrize(
    ("field", "value", "condition"),
    [
        ("Content-Type", "text/html", '["eq", "$Content-Type", "image/png"]'),
        ("x-amz-meta-plant", "8", '["eq", "$x-amz-meta-plant", "7"]'),
    ],
)
def test_failed_eq_condition(
    server: RunningServer,
    tenant: str,
    inbox: dict[str, bytes],
    field: str,
    value: str,
    condition: str,
) -> None:
    """A field that differs from its eq condition (explicit or object form): 403."""
    form = replace(good_form(server, tenant), field, value)
    refused(
        server,
        inbox,
        Body(form),
        403,
        "AccessDenied",
        f"Invalid according to Policy: Policy Condition failed: {condition}",
    )


@pytest.mark.parametrize("signature", SIGNATURES)
def test_failed_starts_with_condition(
    server: RunningServer, tenant: str, inbox: dict[str, bytes], signature: str
) -> None:
    """A key outside the signed prefix: 403 "Policy Condition failed" quoting the condition."""
    form = replace(good_form(server, tenant, signature), "key", f"{tenant}/other/x.png")
    refused(
        server,
        inbox,
        Body(form),
        403,
        "AccessDenied",
        f'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", '
        f'"{tenant}/up/"]',
    )


def test_wrong_bucket(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """A form signed for the inbox, posted to the long-term bucket: the bucket condition fails."""
    longterm_before = snapshot(server.bucket_dir(LONGTERM))
    refused(
        server,
        inbox,
        Body(good_form(server, tenant)),
        403,
        "AccessDenied",
        f'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "{INBOX}"]',
        bucket=LONGTERM,
    )
    assert snapshot(server.bucket_dir(LONGTERM)) == longterm_before


def test_undecodable_policy(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """A correctly signed policy that is not base64 JSON: 400 InvalidPolicyDocument."""
    form = presign(server, f"{tenant}/x.png")
    fields = dict(form)
    date = fields["x-amz-credential"].split("/")[1]
    garbage = "this is {not base64 json}"

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = h(h(h(h(("AWS4" + server.secret_key).encode(), date), REGION), "s3"), "aws4_request")
    form = replace(replace(form, "policy", garbage), "x-amz-signature", h(key, garbage).hex())
    error = refused(server, inbox, Body(form), 400, "InvalidPolicyDocument")
    assert error["Message"].startswith("Invalid Policy: "), error


def test_entity_too_small(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """A file under the content-length-range minimum: 400 EntityTooSmall, nothing stored."""
    form = presign(server, f"{tenant}/tiny.png", conditions=[["content-length-range", 100, 1000]])
    error = refused(
        server,
        inbox,
        Body(form, b"x" * 99),
        400,
        "EntityTooSmall",
        "Your proposed upload is smaller than the minimum allowed size",
    )
    assert (error["ProposedSize"], error["MinSizeAllowed"]) == ("99", "100")


def test_entity_too_large(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """A file over the maximum (sent whole): 400 EntityTooLarge, nothing stored."""
    form = presign(server, f"{tenant}/big.png", conditions=[["content-length-range", 1, 1000]])
    error = refused(
        server,
        inbox,
        Body(form, file=None, file_size=3 * 1024 * 1024),
        400,
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed size",
    )
    assert error["MaxSizeAllowed"] == "1000"


def test_entity_too_large_is_refused_while_streaming(
    server: RunningServer, tenant: str, inbox: dict[str, bytes]
) -> None:
    """The refusal arrives while the client is still sending: the server does not wait
    for the 64 MiB it was promised once the file passes the maximum."""
    form = presign(server, f"{tenant}/huge.png", conditions=[["content-length-range", 1, 1000]])
    body = Body(form, file=None, file_size=64 * 1024 * 1024)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(
            (
                f"POST /{INBOX} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Content-Type: {body.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body.head
        )
        # One 64 KiB piece is already past the 1000-byte maximum: the answer must
        # come now, with 64 MiB still unsent.
        piece = next(body.file_pieces())
        sock.sendall(piece)
        sent = len(piece)
        readable = select.select([sock], [], [], 10)[0]
        assert readable, "no answer while the body was still being sent"
        raw = b""
        while b"</Error>" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        sock.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw[:500]
    answer = Answer(400, [], payload)
    assert answer.error()["Code"] == "EntityTooLarge"
    assert sent == 64 * 1024 < len(body)
    assert_nothing_written(server, inbox)


def test_key_outside_tenant_layout(server: RunningServer, inbox: dict[str, bytes]) -> None:
    """A signed key that breaks the tenant layout: 403 AccessDenied, as for PutObject."""
    form = presign(server, "uploads/${filename}")
    error = refused(server, inbox, Body(form), 403, "AccessDenied")
    assert "company_<id>/plant_<id>/<name>" in error["Message"]


def test_checksum_mismatch(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """An x-amz-checksum-sha256 field that does not match the file: 400 BadDigest."""
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    form = presign(
        server,
        f"{tenant}/bad.png",
        fields={"x-amz-checksum-sha256": wrong},
        conditions=[{"x-amz-checksum-sha256": wrong}],
    )
    refused(
        server,
        inbox,
        Body(form),
        400,
        "BadDigest",
        "The SHA256 you specified did not match the calculated checksum.",
    )


def test_no_file_part(server: RunningServer, tenant: str, inbox: dict[str, bytes]) -> None:
    """A form without a file: 400 InvalidArgument "POST requires exactly one file upload"."""
    form = good_form(server, tenant)
    refused(
        server,
        inbox,
        Body(form, file=None),
        400,
        "InvalidArgument",
        "POST requires exactly one file upload per request.",
    )
