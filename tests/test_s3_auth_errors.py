"""Refusals against the real daemon: a valid botocore-signed request, one mutation, one answer.

Each case starts from a request that would succeed, changes one thing, and
expects the HTTP status and S3 ``Code`` that AWS sends -- and that the bucket
folder is exactly as it was, with no temporary file left behind.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import attrs
import pytest
from awscrt import checksums as crt
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import INBOX, REGION, RunningServer, clean_env, snapshot, temp_files

ORIGINAL = b"the object as it was before the refused request"
BODY = b"a new body that must never be stored" * 10
ACCOUNT_ID = "111122223333"


# ---------------------------------------------------------------------------
# Raw signed requests: botocore signs, http.client sends exactly these bytes.


@attrs.define
class Raw:
    """One HTTP request as it goes on the wire (``target`` is path plus query)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def set(self, name: str, value: str) -> Raw:
        self.drop(name)
        self.headers[name] = value
        return self

    def drop(self, name: str) -> Raw:
        for existing in [h for h in self.headers if h.lower() == name.lower()]:
            del self.headers[existing]
        return self

    def get(self, name: str) -> str | None:
        return next((v for h, v in self.headers.items() if h.lower() == name.lower()), None)


class PayloadAuth(S3SigV4Auth):
    """botocore's S3 signer with a chosen ``x-amz-content-sha256`` value."""

    def __init__(self, credentials: Credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        return self._payload_hash


def _at(when: datetime | None) -> Any:
    if when is None:
        return contextlib.nullcontext()
    return mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None))


def signed(
    server: RunningServer,
    path: str,
    *,
    method: str = "PUT",
    body: bytes = BODY,
    headers: Mapping[str, str] | None = None,
    access_key: str | None = None,
    secret: str | None = None,
    payload_hash: str | None = None,
    when: datetime | None = None,
) -> Raw:
    """A request signed in the Authorization header, as boto3 signs PutObject over http."""
    request = AWSRequest(
        method=method, url=server.url + path, data=body, headers=dict(headers or {})
    )
    credentials = Credentials(access_key or server.access_key, secret or server.secret_key)
    signer = (
        PayloadAuth(credentials, payload_hash)
        if payload_hash is not None
        else S3SigV4Auth(credentials, "s3", REGION)
    )
    with _at(when):
        signer.add_auth(request)
    return _raw(request, method, body)


def presigned(
    server: RunningServer,
    path: str,
    *,
    method: str = "PUT",
    body: bytes = BODY,
    headers: Mapping[str, str] | None = None,
    expires: int = 300,
    when: datetime | None = None,
    access_key: str | None = None,
    secret: str | None = None,
) -> Raw:
    """A presigned URL request, as generate_presigned_url makes them."""
    request = AWSRequest(method=method, url=server.url + path, headers=dict(headers or {}))
    credentials = Credentials(access_key or server.access_key, secret or server.secret_key)
    with _at(when):
        S3SigV4QueryAuth(credentials, "s3", REGION, expires=expires).add_auth(request)
    return _raw(request, method, body)


def _raw(request: AWSRequest, method: str, body: bytes) -> Raw:
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    return Raw(method, target, headers, body)


def send(server: RunningServer, raw: Raw) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(raw.method, raw.target, body=raw.body, headers=raw.headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def code_of(body: bytes) -> str | None:
    match = re.search(rb"<Code>([^<]*)</Code>", body)
    return match.group(1).decode() if match else None


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "crc32c":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if algorithm == "crc64nvme":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    return b64(hashlib.new(algorithm, data).digest())


def object_path(tenant: str, name: str = "target.bin") -> str:
    return f"/{INBOX}/{tenant}/{name}"


# ---------------------------------------------------------------------------
# The table: (build the mutated request) -> (status, code)

Build = Callable[[RunningServer, str], Raw]


def _now() -> datetime:
    return datetime.now(UTC)


def _with(build: Build, mutate: Callable[[Raw], object]) -> Build:
    def built(server: RunningServer, tenant: str) -> Raw:
        raw = build(server, tenant)
        mutate(raw)
        return raw

    return built


def put(**kwargs: Any) -> Build:
    """A valid header-signed PutObject of BODY over the existing object."""
    name = kwargs.pop("name", "target.bin")
    return lambda server, tenant: signed(server, object_path(tenant, name), **kwargs)


def presigned_put(**kwargs: Any) -> Build:
    return lambda server, tenant: presigned(server, object_path(tenant), **kwargs)


def raw_key(suffix: str) -> Build:
    """A header-signed PutObject whose request path (after the tenant) is *suffix*, as is."""
    return lambda server, tenant: signed(server, f"/{INBOX}/{tenant}/{suffix}")


def key_path(key: str) -> Build:
    """A header-signed PutObject of *key*, percent-encoded as botocore encodes keys."""
    return lambda server, tenant: signed(server, f"/{INBOX}/{quote(key, safe='/~')}")


def _tamper_signature(raw: Raw) -> None:
    auth = raw.get("Authorization") or ""
    signature = auth.rsplit("=", 1)[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    raw.set("Authorization", auth[: -len(signature)] + flipped)


def _checksum_cases() -> Iterator[Any]:
    for algorithm in ("crc32", "crc32c", "sha1", "sha256", "crc64nvme"):
        header = f"x-amz-checksum-{algorithm}"
        wrong = checksum(algorithm, b"something else")
        yield pytest.param(
            put(headers={header: wrong}), 400, "BadDigest", id=f"{algorithm}-mismatch"
        )
        yield pytest.param(
            put(headers={header: "not base64!"}), 400, "InvalidRequest", id=f"{algorithm}-malformed"
        )
        short = b64(b"\x00\x01")
        yield pytest.param(
            put(headers={header: short}), 400, "InvalidRequest", id=f"{algorithm}-wrong-size"
        )


CASES = [
    # -- who signed ---------------------------------------------------------
    pytest.param(
        put(access_key="AKIANOTAPLANTCDNKEY1"), 403, "InvalidAccessKeyId", id="unknown-key-id"
    ),
    pytest.param(put(secret="not-the-secret"), 403, "SignatureDoesNotMatch", id="wrong-secret"),
    pytest.param(
        _with(put(), _tamper_signature), 403, "SignatureDoesNotMatch", id="tampered-signature"
    ),
    pytest.param(
        _with(
            put(),
            lambda r: (
                r.drop("Authorization"),
                r.drop("X-Amz-Content-SHA256"),
                r.drop("X-Amz-Date"),
            ),
        ),
        403,
        "AccessDenied",
        id="no-auth",
    ),
    pytest.param(
        _with(put(), lambda r: r.drop("Authorization")), 403, "AccessDenied", id="no-authorization"
    ),
    pytest.param(
        lambda s, t: signed(s, object_path(t), when=_now() + timedelta(minutes=16)),
        403,
        "RequestTimeTooSkewed",
        id="sixteen-minutes-ahead",
    ),
    pytest.param(
        lambda s, t: signed(s, object_path(t), when=_now() - timedelta(minutes=16)),
        403,
        "RequestTimeTooSkewed",
        id="sixteen-minutes-behind",
    ),
    pytest.param(
        _with(
            put(),
            lambda r: r.set(
                "Authorization",
                (r.get("Authorization") or "").replace("/us-east-1/", "/eu-west-1/"),
            ),
        ),
        400,
        "AuthorizationHeaderMalformed",
        id="wrong-region",
    ),
    pytest.param(
        _with(put(), lambda r: r.set("x-amz-meta-sneaky", "added after signing")),
        403,
        "AccessDenied",
        id="unsigned-amz-header",
    ),
    pytest.param(
        _with(put(), lambda r: r.set("X-Amz-Date", "20260101T000000Z")),
        400,
        "AuthorizationHeaderMalformed",
        id="date-not-credential-date",
    ),
    # -- presigned URLs -------------------------------------------------------
    pytest.param(
        presigned_put(access_key="AKIANOTAPLANTCDNKEY1"),
        403,
        "InvalidAccessKeyId",
        id="presigned-unknown-key-id",
    ),
    pytest.param(
        presigned_put(secret="not-the-secret"),
        403,
        "SignatureDoesNotMatch",
        id="presigned-wrong-secret",
    ),
    pytest.param(
        lambda s, t: presigned(s, object_path(t), when=_now() + timedelta(minutes=30)),
        403,
        "AccessDenied",
        id="presigned-not-yet-valid",
    ),
    pytest.param(
        _with(presigned_put(), lambda r: setattr(r, "target", r.target + "&x-id=PutObject")),
        403,
        "SignatureDoesNotMatch",
        id="presigned-added-query-parameter",
    ),
    pytest.param(
        presigned_put(expires=60, when=_now() - timedelta(hours=1)),
        403,
        "AccessDenied",
        id="presigned-expired",
    ),
    pytest.param(
        presigned_put(expires=604801),
        400,
        "AuthorizationQueryParametersError",
        id="presigned-expires-over-a-week",
    ),
    pytest.param(
        _with(presigned_put(), lambda r: (setattr(r, "method", "GET"), setattr(r, "body", b""))),
        403,
        "SignatureDoesNotMatch",
        id="presigned-other-method",
    ),
    pytest.param(
        _with(
            presigned_put(headers={"Content-Type": "image/jpeg"}),
            lambda r: r.set("Content-Type", "text/html"),
        ),
        403,
        "SignatureDoesNotMatch",
        id="presigned-altered-content-type",
    ),
    pytest.param(
        _with(
            presigned_put(),
            lambda r: setattr(r, "target", r.target.replace("target.bin", "other.bin")),
        ),
        403,
        "SignatureDoesNotMatch",
        id="presigned-other-key",
    ),
    pytest.param(
        _with(presigned_put(), lambda r: r.set("Authorization", "AWS4-HMAC-SHA256 x")),
        400,
        "InvalidArgument",
        id="presigned-and-header-auth",
    ),
    # -- signed headers altered -----------------------------------------------
    pytest.param(
        _with(
            put(headers={"Content-Type": "image/jpeg"}),
            lambda r: r.set("Content-Type", "text/html"),
        ),
        403,
        "SignatureDoesNotMatch",
        id="altered-content-type",
    ),
    pytest.param(
        _with(
            put(headers={"Cache-Control": "max-age=60"}),
            lambda r: r.set("Cache-Control", "max-age=31536000"),
        ),
        403,
        "SignatureDoesNotMatch",
        id="altered-cache-control",
    ),
    pytest.param(
        _with(put(headers={"x-amz-meta-plant": "1"}), lambda r: r.set("x-amz-meta-plant", "2")),
        403,
        "SignatureDoesNotMatch",
        id="altered-metadata",
    ),
    # -- payload ---------------------------------------------------------------
    pytest.param(
        _with(put(), lambda r: setattr(r, "body", BODY[:-1] + b"!")),
        400,
        "XAmzContentSHA256Mismatch",
        id="body-not-content-sha256",
    ),
    pytest.param(
        put(payload_hash=hashlib.sha256(b"other").hexdigest()),
        400,
        "XAmzContentSHA256Mismatch",
        id="content-sha256-of-other-body",
    ),
    pytest.param(
        put(payload_hash="not-a-hash"), 400, "InvalidArgument", id="content-sha256-garbage"
    ),
    pytest.param(
        put(headers={"Content-MD5": b64(hashlib.md5(b"other").digest())}),
        400,
        "BadDigest",
        id="content-md5-mismatch",
    ),
    pytest.param(
        put(headers={"Content-MD5": "not-an-md5"}), 400, "InvalidDigest", id="content-md5-malformed"
    ),
    pytest.param(
        put(headers={"Content-MD5": b64(b"short")}), 400, "InvalidDigest", id="content-md5-short"
    ),
    *_checksum_cases(),
    pytest.param(
        put(
            headers={
                "x-amz-checksum-crc32": checksum("crc32", BODY),
                "x-amz-checksum-sha256": checksum("sha256", BODY),
            }
        ),
        400,
        "InvalidRequest",
        id="two-checksums",
    ),
    pytest.param(
        put(headers={"x-amz-checksum-md4": "AAAA"}), 400, "InvalidRequest", id="unknown-checksum"
    ),
    # -- keys ------------------------------------------------------------------
    pytest.param(key_path("photos/leaf.jpg"), 403, "AccessDenied", id="outside-layout"),
    pytest.param(key_path("company_1/leaf.jpg"), 403, "AccessDenied", id="no-plant"),
    pytest.param(
        key_path("company_x/plant_1/leaf.jpg"), 403, "AccessDenied", id="non-numeric-company"
    ),
    pytest.param(
        key_path("company_1/plant_y/leaf.jpg"), 403, "AccessDenied", id="non-numeric-plant"
    ),
    pytest.param(key_path("plant_1/company_1/leaf.jpg"), 403, "AccessDenied", id="swapped-layout"),
    pytest.param(key_path(".plantcdn/tmp/x.part"), 403, "AccessDenied", id="internal-folder"),
    pytest.param(raw_key("../escape.txt"), 400, "InvalidArgument", id="dotdot"),
    pytest.param(raw_key("../../../../../escape.txt"), 400, "InvalidArgument", id="dotdot-many"),
    pytest.param(raw_key("%2E%2E/escape.txt"), 400, "InvalidArgument", id="dotdot-encoded"),
    pytest.param(raw_key("a/%2e%2e/%2e%2e/%2e%2e/x"), 400, "InvalidArgument", id="dotdot-lower"),
    pytest.param(raw_key("./x.txt"), 400, "InvalidArgument", id="dot"),
    pytest.param(raw_key("a//x.txt"), 400, "InvalidArgument", id="double-slash"),
    pytest.param(raw_key("x.txt/"), 400, "InvalidArgument", id="trailing-slash"),
    pytest.param(raw_key("a\\..\\x.txt"), 400, "InvalidArgument", id="backslash"),
    pytest.param(raw_key("a%5Cx.txt"), 400, "InvalidArgument", id="backslash-encoded"),
    pytest.param(raw_key("x%00.txt"), 400, "InvalidArgument", id="nul-encoded"),
    pytest.param(raw_key("x%01.txt"), 400, "InvalidArgument", id="control-encoded"),
    pytest.param(raw_key("x%0A.txt"), 400, "InvalidArgument", id="newline-encoded"),
    pytest.param(raw_key("x%1F.txt"), 400, "InvalidArgument", id="unit-separator-encoded"),
    pytest.param(raw_key("x%7F.txt"), 400, "InvalidArgument", id="del-encoded"),
    pytest.param(raw_key("x%FF.txt"), 400, "InvalidURI", id="not-utf8"),
    pytest.param(raw_key("k" * 1010), 400, "KeyTooLongError", id="key-over-1024-bytes"),
    pytest.param(raw_key("%C3%A9" * 510), 400, "KeyTooLongError", id="utf8-key-over-1024-bytes"),
    # Deliberate difference: S3 takes a 256-byte segment, a file name cannot be that long.
    pytest.param(raw_key("s" * 256), 400, "KeyTooLongError", id="segment-over-255-bytes"),
    pytest.param(raw_key("d" * 256 + "/x"), 400, "KeyTooLongError", id="folder-over-255-bytes"),
    # -- headers ------------------------------------------------------------------
    pytest.param(
        put(headers={"x-amz-meta-big": "x" * 2046}), 400, "MetadataTooLarge", id="metadata-over-2kb"
    ),
    pytest.param(
        put(headers={f"x-amz-meta-m{n:02d}": "v" * 100 for n in range(20)}),
        400,
        "MetadataTooLarge",
        id="metadata-many-over-2kb",
    ),
    pytest.param(
        put(headers={"x-amz-acl": "world-writable"}), 400, "InvalidArgument", id="bad-acl"
    ),
    pytest.param(
        put(headers={"x-amz-expected-bucket-owner": "not-an-account"}),
        400,
        "InvalidBucketOwnerAWSAccountID",
        id="owner-malformed",
    ),
    pytest.param(
        put(headers={"If-None-Match": "*"}), 412, "PreconditionFailed", id="if-none-match-star"
    ),
    pytest.param(
        put(headers={"If-Match": '"0123456789abcdef0123456789abcdef"'}),
        412,
        "PreconditionFailed",
        id="if-match-other-etag",
    ),
    pytest.param(
        lambda s, t: signed(s, f"/not-a-plantcdn-bucket/{t}/target.bin"),
        404,
        "NoSuchBucket",
        id="unknown-bucket",
    ),
]


@pytest.fixture
def existing(server: RunningServer, tenant: str) -> Iterator[str]:
    """The tenant's ``target.bin`` holds ORIGINAL before each case."""
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/target.bin", Body=ORIGINAL, ContentType="text/plain")
    yield tenant


def tree(folder: Path) -> list[str]:
    """Every path below *folder*, plantcdn's own files included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize(("build", "status", "code"), CASES)
def test_refusal(
    server: RunningServer, existing: str, build: Build, status: int, code: str
) -> None:
    """One mutation of a valid request gives AWS's status and code, and changes nothing."""
    folder = server.bucket_dir(INBOX)
    raw = build(server, existing)
    before, before_tree = snapshot(folder), tree(server.data_dir)
    got_status, headers, body = send(server, raw)
    assert (got_status, code_of(body)) == (status, code), body.decode("utf-8", "replace")
    assert headers.get("x-amz-request-id") and headers.get("x-amz-id-2")
    assert headers.get("Content-Type") == "application/xml"
    assert snapshot(folder) == before
    assert tree(server.data_dir) == before_tree
    assert temp_files(folder) == []
    s3: Any = server.client()
    head = s3.head_object(Bucket=INBOX, Key=f"{existing}/target.bin")
    assert head["ContentLength"] == len(ORIGINAL)
    assert head["ContentType"] == "text/plain"


def test_expired_presigned_message(server: RunningServer, existing: str) -> None:
    """An expired presigned URL says so, with the expiry and the server time."""
    raw = presigned(
        server, object_path(existing), method="GET", body=b"", expires=1,
        when=_now() - timedelta(minutes=5),
    )  # fmt: skip
    status, _, body = send(server, raw)
    assert status == 403
    assert b"<Message>Request has expired</Message>" in body
    assert b"<Expires>" in body and b"<ServerTime>" in body


def test_skew_error_names_both_times(server: RunningServer, existing: str) -> None:
    """RequestTimeTooSkewed carries RequestTime, ServerTime and the allowed skew."""
    raw = signed(server, object_path(existing), when=_now() - timedelta(minutes=20))
    status, _, body = send(server, raw)
    assert (status, code_of(body)) == (403, "RequestTimeTooSkewed")
    assert b"<RequestTime>" in body and b"<ServerTime>" in body
    assert b"<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>" in body


def test_layout_error_names_the_layout(server: RunningServer, existing: str) -> None:
    """A key outside the tenant layout is told which layout is required."""
    status, _, body = send(server, key_path("photos/x.jpg")(server, existing))
    assert (status, code_of(body)) == (403, "AccessDenied")
    assert b"company_&lt;id&gt;/plant_&lt;id&gt;/" in body or b"company_<id>" in body


# ---------------------------------------------------------------------------
# The same requests, unmutated, succeed (so the table tests one thing each).


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(put(), id="header-signed"),
        pytest.param(presigned_put(), id="presigned"),
        pytest.param(presigned_put(headers={"Content-Type": "image/jpeg"}), id="presigned-ct"),
        pytest.param(put(payload_hash="UNSIGNED-PAYLOAD"), id="unsigned-payload"),
        pytest.param(
            lambda s, t: signed(s, object_path(t), when=_now() - timedelta(minutes=14)),
            id="fourteen-minutes-behind",
        ),
        pytest.param(
            lambda s, t: signed(s, object_path(t), when=_now() + timedelta(minutes=14)),
            id="fourteen-minutes-ahead",
        ),
        pytest.param(put(headers={"Content-MD5": b64(hashlib.md5(BODY).digest())}), id="md5"),
        *(
            pytest.param(put(headers={f"x-amz-checksum-{a}": checksum(a, BODY)}), id=a)
            for a in ("crc32", "crc32c", "sha1", "sha256", "crc64nvme")
        ),
        pytest.param(put(headers={"x-amz-meta-b": "x" * 2047}), id="metadata-exactly-2kb"),
        pytest.param(raw_key("/".join(["k" * 200] * 4)), id="long-key"),
        pytest.param(put(headers={"x-amz-expected-bucket-owner": ACCOUNT_ID}), id="owner-unset"),
        pytest.param(put(name="fresh.bin", headers={"If-None-Match": "*"}), id="if-none-match-new"),
    ],
)
def test_control_request_succeeds(server: RunningServer, existing: str, build: Build) -> None:
    """The unmutated request is stored and answered 200 with the body's ETag."""
    raw = build(server, existing)
    status, headers, body = send(server, raw)
    assert status == 200, body.decode("utf-8", "replace")
    assert headers["ETag"] == '"' + hashlib.md5(BODY).hexdigest() + '"'
    assert temp_files(server.bucket_dir(INBOX)) == []


def test_checksum_echoed(server: RunningServer, existing: str) -> None:
    """A verified x-amz-checksum-* is echoed on the PutObject answer, as S3 does."""
    value = checksum("crc32c", BODY)
    status, headers, _ = send(
        server, put(headers={"x-amz-checksum-crc32c": value})(server, existing)
    )
    assert status == 200
    assert headers["x-amz-checksum-crc32c"] == value


# ---------------------------------------------------------------------------
# x-amz-expected-bucket-owner with AWS_ACCOUNT_ID configured


@pytest.fixture(scope="module")
def owned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("owned"),
        clean_env({"PLANTCDN_FSYNC": "false", "AWS_ACCOUNT_ID": ACCOUNT_ID}),
    )
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("method", "owner", "status", "code"),
    [
        ("PUT", "999988887777", 403, "AccessDenied"),
        ("GET", "999988887777", 403, "AccessDenied"),
        ("PUT", "11112222333", 400, "InvalidBucketOwnerAWSAccountID"),
        ("PUT", "owner", 400, "InvalidBucketOwnerAWSAccountID"),
        ("PUT", ACCOUNT_ID, 200, None),
        ("GET", ACCOUNT_ID, 200, None),
        ("PUT", None, 200, None),
    ],
)
def test_expected_bucket_owner(
    owned_server: RunningServer,
    tenant: str,
    method: str,
    owner: str | None,
    status: int,
    code: str | None,
) -> None:
    """With AWS_ACCOUNT_ID set, only the configured owner (or no header) gets through."""
    folder = owned_server.bucket_dir(INBOX)
    s3: Any = owned_server.client()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/target.bin", Body=ORIGINAL)
    headers = {"x-amz-expected-bucket-owner": owner} if owner is not None else {}
    raw = signed(
        owned_server, object_path(tenant), method=method,
        body=BODY if method == "PUT" else b"", headers=headers,
    )  # fmt: skip
    before = snapshot(folder)
    got, _, body = send(owned_server, raw)
    assert (got, code_of(body)) == (status, code), body
    if status != 200:
        assert snapshot(folder) == before
        assert temp_files(folder) == []
    elif method == "PUT":
        assert (folder / tenant / "target.bin").read_bytes() == BODY


def test_expected_bucket_owner_via_boto3(owned_server: RunningServer, tenant: str) -> None:
    """boto3's ExpectedBucketOwner parameter raises AccessDenied for another account."""
    from botocore.exceptions import ClientError

    s3: Any = owned_server.client()
    with pytest.raises(ClientError) as info:
        s3.put_object(
            Bucket=INBOX, Key=f"{tenant}/o.bin", Body=b"x", ExpectedBucketOwner="999988887777"
        )
    assert info.value.response["Error"]["Code"] == "AccessDenied"
    assert not (owned_server.bucket_dir(INBOX) / tenant / "o.bin").exists()
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/o.bin", Body=b"x", ExpectedBucketOwner=ACCOUNT_ID)


# ---------------------------------------------------------------------------
# Reads of keys that cannot exist: an S3 answer, never a bare HTML page.


@pytest.mark.parametrize(
    ("suffix", "status", "code"),
    [
        ("x%0Ay", 404, "NoSuchKey"),
        ("x%0Dy", 404, "NoSuchKey"),
        ("%0A", 404, "NoSuchKey"),
        ("x%00y", 404, "NoSuchKey"),
        ("../../s3_longterm/x", 404, "NoSuchKey"),
        ("a//b", 404, "NoSuchKey"),
        ("a%5Cb", 404, "NoSuchKey"),
        (".plantcdn/tmp", 404, "NoSuchKey"),
        ("x%FFy", 400, "InvalidURI"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_read_of_impossible_key(
    server: RunningServer, tenant: str, suffix: str, status: int, code: str, method: str
) -> None:
    """GetObject/HeadObject of a key that cannot be stored is an S3 error, not HTML."""
    raw = signed(server, f"/{INBOX}/{tenant}/{suffix}", method=method, body=b"")
    got, headers, body = send(server, raw)
    assert got == status, body
    assert headers.get("x-amz-request-id")
    if method == "GET":
        assert code_of(body) == code, body
        assert headers.get("Content-Type") == "application/xml"
