"""SigV2 verification: AWS's documented examples, botocore-signed requests, one-mutation tables."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantcdn.call import parse_query
from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.sigv2 import (
    authenticate_v2,
    canonical_amz_headers,
    canonical_resource,
    is_sigv2,
    sign_v2,
)
from plantcdn.sigv4 import AuthResult, RequestParts

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = {AKID: Credential(AKID, SECRET)}
BUCKET = "plantdb-inbox"
ENDPOINT = "http://s3.plantcdn.test:9000"
#: A fixed signing instant for botocore-signed requests (2024-05-01T12:00:00Z).
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()

KEYS = [
    "plain.txt",
    "with space/and more spaces.txt",
    "ünïcødé/日本語/é.txt",
    "plus+and%percent.txt",
    "tilde~bang!star*quote'paren().txt",
    "semi;colon=eq&amp?question#hash.txt",
    "double//slash/./dot/../dotdot",
    "company_1/plant_2/2024-05-01T12:00:00Z.json",
]


def parts_of(method: str, url: str, headers: Mapping[str, Any]) -> RequestParts:
    """What the HTTP layer hands over: raw path, raw query pairs, lower-case headers."""
    split = urlsplit(url)
    pairs, _ = parse_query(split.query)
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        merged.setdefault(name.lower(), []).append(text.strip())
    return RequestParts(
        method, split.path, pairs, {name: ",".join(values) for name, values in merged.items()}
    )


def auth(
    parts: RequestParts,
    *,
    now: float = NOW,
    bucket: str | None = None,
    virtual_hosted: bool = False,
) -> AuthResult:
    return authenticate_v2(parts, CREDS, now=now, bucket=bucket, virtual_hosted=virtual_hosted)


def refusal(parts: RequestParts, **kwargs: Any) -> S3Error:
    with pytest.raises(S3Error) as info:
        auth(parts, **kwargs)
    return info.value


# ---------------------------------------------------------------------------
# botocore signers pinned to a clock


class FixedDateHmacV1Auth(HmacV1Auth):
    """botocore's header signer, with the Date it stamps fixed for repeatable tests."""

    def __init__(self, credentials: Credentials, when: float) -> None:
        super().__init__(credentials)
        self._when = when

    def _get_date(self) -> str:
        return formatdate(self._when, usegmt=True)


class FixedExpiryHmacV1QueryAuth(HmacV1QueryAuth):
    """botocore's presigner, with the Expires it stamps fixed."""

    def __init__(self, credentials: Credentials, expires_at: int) -> None:
        super().__init__(credentials)
        self._expires_at = expires_at

    def _get_date(self) -> str:
        return str(self._expires_at)


def path_style_url(key: str | None, query: str = "") -> str:
    # botocore renders greedy key labels with percent_encode(key, safe="/~").
    path = f"/{BUCKET}" + ("" if key is None else "/" + quote(key, safe="/~"))
    return f"{ENDPOINT}{path}" + (f"?{query}" if query else "")


def botocore_signed(
    method: str,
    key: str | None,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    virtual_hosted: bool = False,
    presign_expires_at: int | None = None,
    access_key: str = AKID,
    secret: str = SECRET,
) -> RequestParts:
    """Sign with botocore's own HmacV1Auth/HmacV1QueryAuth and return the wire parts.

    ``auth_path`` is set as a boto3 client sets it: the path-style path, with a
    trailing ``/`` for bucket-level requests in both addressing styles
    (``remove_bucket_from_url_paths_from_model``).  Virtual-hosted requests
    then move the bucket into the host (``switch_to_virtual_host_style``).
    """
    url = path_style_url(key, query)
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    split = urlsplit(url)
    request.auth_path = split.path if key is not None else split.path + "/"
    if virtual_hosted:
        vpath = split.path[len(f"/{BUCKET}") :] or "/"
        host = f"{BUCKET}.{split.netloc}"
        request.url = f"{split.scheme}://{host}{vpath}" + (f"?{split.query}" if query else "")
    credentials = Credentials(access_key, secret)
    if presign_expires_at is None:
        FixedDateHmacV1Auth(credentials, NOW).add_auth(request)
    else:
        FixedExpiryHmacV1QueryAuth(credentials, presign_expires_at).add_auth(request)
        # A presigned URL is then fetched by a client that sends none of the
        # signed headers it carried at signing time except those it chooses to.
        request.headers = type(request.headers)()
    prepared = request.prepare()
    return parts_of(method, prepared.url, dict(prepared.headers.items()))


def v_auth(parts: RequestParts, virtual_hosted: bool, **kwargs: Any) -> AuthResult:
    bucket = BUCKET if virtual_hosted else None
    return auth(parts, bucket=bucket, virtual_hosted=virtual_hosted, **kwargs)


# ---------------------------------------------------------------------------
# AWS's documented examples ("Signing and authenticating REST requests",
# section "Authentication examples"; credentials AKIAIOSFODNN7EXAMPLE).


def doc_time(text: str) -> float:
    return datetime.strptime(text, "%a, %d %b %Y %H:%M:%S +0000").replace(tzinfo=UTC).timestamp()


def doc_request(method: str, path: str, date: str, signature: str, **headers: str) -> RequestParts:
    raw_path, _, raw_query = path.partition("?")
    pairs, _ = parse_query(raw_query)
    all_headers = {"date": date, "authorization": f"AWS {AKID}:{signature}"}
    all_headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return RequestParts(method, raw_path, pairs, all_headers)


DOC_EXAMPLES = {
    "object-get": (
        doc_request(
            "GET",
            "/photos/puppy.jpg",
            "Tue, 27 Mar 2007 19:36:42 +0000",
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        ),
        "awsexamplebucket1",
    ),
    "object-put": (
        doc_request(
            "PUT",
            "/photos/puppy.jpg",
            "Tue, 27 Mar 2007 21:15:45 +0000",
            "iqRzw+ileNPu1fhspnRs8nOjjIA=",
            content_type="image/jpeg",
            content_length="94328",
        ),
        "awsexamplebucket1",
    ),
    "list": (
        doc_request(
            "GET",
            "/?prefix=photos&max-keys=50&marker=puppy",
            "Tue, 27 Mar 2007 19:42:41 +0000",
            "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
            user_agent="Mozilla/5.0",
        ),
        "awsexamplebucket1",
    ),
    "fetch-acl": (
        doc_request(
            "GET",
            "/?acl",
            "Tue, 27 Mar 2007 19:44:46 +0000",
            "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
        ),
        "awsexamplebucket1",
    ),
    "list-all-my-buckets": (
        doc_request(
            "GET",
            "/",
            "Wed, 28 Mar 2007 01:29:59 +0000",
            "qGdzdERIC03wnaRNKh6OqZehG9s=",
        ),
        None,
    ),
    "unicode-keys": (
        doc_request(
            "GET",
            "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
            "Wed, 28 Mar 2007 01:49:49 +0000",
            "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        ),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_aws_documented_header_examples_verify(name: str) -> None:
    """Each reproducible example from the SigV2 page verifies with the example key."""
    parts, bucket = DOC_EXAMPLES[name]
    when = doc_time(parts.headers["date"])
    result = auth(parts, now=when, bucket=bucket, virtual_hosted=bucket is not None)
    assert result.access_key_id == AKID
    assert result.presigned is False
    assert result.amz_date == datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%SZ")


def test_aws_documented_unicode_example_signs_the_path_literally() -> None:
    """Re-casing one percent escape of the documented unicode key breaks the signature."""
    parts, _ = DOC_EXAMPLES["unicode-keys"]
    recased = attrs.evolve(parts, raw_path=parts.raw_path.replace("%c3%a9f", "%C3%A9f"))
    error = refusal(recased, now=doc_time(parts.headers["date"]))
    assert (error.status, error.code) == (403, "SignatureDoesNotMatch")
    assert error.extra["StringToSign"].endswith("/dictionary/fran%C3%A7ais/pr%C3%A9f%c3%a8re")


def test_aws_documented_query_string_example_verifies_until_it_expires() -> None:
    """The page's presigned GET (Expires=1175139620) verifies up to that second only.

    The page renamed the bucket to awsexamplebucket1 in the text but kept the
    signature computed for the original ``johnsmith`` bucket, so that is the
    bucket it verifies against.
    """
    pairs, _ = parse_query(
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        "&Expires=1175139620"
    )
    parts = RequestParts("GET", "/photos/puppy.jpg", pairs, {"host": "johnsmith.s3.amazonaws.com"})
    result = auth(parts, now=1175139620, bucket="johnsmith", virtual_hosted=True)
    assert result.presigned is True
    assert result.payload_hash == "UNSIGNED-PAYLOAD"
    assert result.amz_date == "20070329T034020Z"
    error = refusal(parts, now=1175139621, bucket="johnsmith", virtual_hosted=True)
    assert (error.status, error.code, error.message) == (403, "AccessDenied", "Request has expired")


def test_x_amz_date_replaces_date_with_an_empty_line_as_the_page_says() -> None:
    """With x-amz-date, the Date position is empty and x-amz-date is signed as a header.

    The page's "Delete" example contradicts its own rule (its StringToSign puts
    the x-amz-date value in the Date position and drops the header line), so
    its signature is refused; the rule the page states is what S3 and the SDKs
    (boto, botocore, swift3) follow.
    """
    date, amz_date = "Tue, 27 Mar 2007 21:20:27 +0000", "Tue, 27 Mar 2007 21:20:26 +0000"
    documented = RequestParts(
        "DELETE",
        "/awsexamplebucket1/photos/puppy.jpg",
        (),
        {
            "date": date,
            "x-amz-date": amz_date,
            "authorization": f"AWS {AKID}:XbyTlbQdu9Xw5o8P4iMwPktxQd8=",
        },
    )
    error = refusal(documented, now=doc_time(amz_date))
    expected = f"DELETE\n\n\n\nx-amz-date:{amz_date}\n/awsexamplebucket1/photos/puppy.jpg"
    assert (error.code, error.extra["StringToSign"]) == ("SignatureDoesNotMatch", expected)
    by_the_rule = attrs.evolve(
        documented,
        headers={**documented.headers, "authorization": f"AWS {AKID}:{sign_v2(SECRET, expected)}"},
    )
    assert auth(by_the_rule, now=doc_time(amz_date)).amz_date == "20070327T212026Z"


def test_aws_documented_upload_example_string_to_sign_is_rebuilt_exactly() -> None:
    """The "Upload" example's StringToSign: sorted, lower-cased, comma-joined amz headers.

    (The page's signature for it does not reproduce from its own StringToSign,
    so only the canonical string is checked.)
    """
    headers = {
        "x-amz-acl": "public-read",
        "x-amz-meta-reviewedby": "joe@example.com,jane@example.com",
        "x-amz-meta-filechecksum": "0x02661779",
        "x-amz-meta-checksumalgorithm": "crc32",
    }
    assert canonical_amz_headers(headers) == (
        "x-amz-acl:public-read\n"
        "x-amz-meta-checksumalgorithm:crc32\n"
        "x-amz-meta-filechecksum:0x02661779\n"
        "x-amz-meta-reviewedby:joe@example.com,jane@example.com\n"
    )
    resource = canonical_resource(
        "/db-backup.dat.gz", (), bucket="static.example.com", virtual_hosted=True
    )
    assert resource == "/static.example.com/db-backup.dat.gz"


# ---------------------------------------------------------------------------
# CanonicalizedResource


@pytest.mark.parametrize(
    ("raw_path", "query", "bucket", "virtual", "expected"),
    [
        ("", "", None, False, "/"),
        ("/", "", "b", True, "/b/"),
        ("/k%20ey", "", "b", True, "/b/k%20ey"),
        ("/b/k", "prefix=x&max-keys=2", None, False, "/b/k"),
        ("/b/k", "versionId=v%201&acl", None, False, "/b/k?acl&versionId=v 1"),
        ("/b/k", "uploadId=u&partNumber=3", None, False, "/b/k?partNumber=3&uploadId=u"),
        (
            "/b/k",
            "response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22",
            None,
            False,
            '/b/k?response-content-disposition=attachment; filename="a b.txt"',
        ),
        ("/b/k", "response-content-type=a+b", None, False, "/b/k?response-content-type=a+b"),
        ("/b", "uploads", "ignored", False, "/b/?uploads"),
        ("/b", "Acl&ACL=1", None, False, "/b/"),
        ("/b/", "", None, False, "/b/"),
        ("/b//", "", None, False, "/b//"),
    ],
)
def test_canonical_resource(
    raw_path: str, query: str, bucket: str | None, virtual: bool, expected: str
) -> None:
    """Bucket prefix only when virtual-hosted; sub-resources decoded and sorted; others dropped."""
    pairs, _ = parse_query(query)
    assert canonical_resource(raw_path, pairs, bucket=bucket, virtual_hosted=virtual) == expected


# ---------------------------------------------------------------------------
# botocore-signed requests


@pytest.mark.parametrize("virtual", [False, True], ids=["path", "virtual"])
@pytest.mark.parametrize("key", KEYS)
def test_botocore_header_signed_put_verifies(key: str, virtual: bool) -> None:
    """HmacV1Auth's PUT with Content-Type, Content-MD5 and metadata verifies for any key."""
    parts = botocore_signed(
        "PUT",
        key,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-Reviewed-By": "  joe  and  jane  ",
            "x-amz-acl": "private",
        },
        virtual_hosted=virtual,
    )
    result = v_auth(parts, virtual)
    assert result == AuthResult(
        access_key_id=AKID,
        payload_hash="UNSIGNED-PAYLOAD",
        amz_date="20240501T120000Z",
        scope="",
        signing_key=b"",
        seed_signature="",
        presigned=False,
    )


@pytest.mark.parametrize("virtual", [False, True], ids=["path", "virtual"])
@pytest.mark.parametrize(
    ("key", "query"),
    [
        (None, "acl"),
        (None, "uploads"),
        (None, "versioning"),
        (None, "list-type=2&prefix=a%20b&encoding-type=url"),
        (None, "delete"),
        ("k y", "acl&versionId=v%201"),
        ("k y", "uploadId=abc%2Bdef&partNumber=7"),
        ("k y", "tagging"),
        ("k y", "response-content-type=text%2Fplain&response-cache-control=no-cache"),
    ],
)
def test_botocore_header_signed_subresources_verify(
    key: str | None, query: str, virtual: bool
) -> None:
    """Sub-resources, with their values, sign in botocore's order and decoding."""
    parts = botocore_signed("GET", key, query=query, virtual_hosted=virtual)
    assert v_auth(parts, virtual).access_key_id == AKID


@pytest.mark.parametrize("virtual", [False, True], ids=["path", "virtual"])
@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_get_verifies(key: str, virtual: bool) -> None:
    """HmacV1QueryAuth's URL, with response overrides, verifies and is marked presigned."""
    expires_at = int(NOW) + 3600
    query = (
        "response-content-disposition="
        + quote('attachment; filename="ü x.txt"', safe="")
        + "&response-content-type=text%2Fplain"
    )
    parts = botocore_signed(
        "GET", key, query=query, virtual_hosted=virtual, presign_expires_at=expires_at
    )
    result = v_auth(parts, virtual)
    assert (result.presigned, result.payload_hash) == (True, "UNSIGNED-PAYLOAD")
    assert result.amz_date == "20240501T120000Z"


def test_botocore_presigned_put_carries_metadata_in_the_query() -> None:
    """x-amz-* headers presigned into the query are signed as headers; no header needed."""
    expires_at = int(NOW) + 60
    url = path_style_url("company_1/plant_2/x.json")
    request = AWSRequest(method="PUT", url=url, headers={"x-amz-meta-plant": "Tomato 1"})
    FixedExpiryHmacV1QueryAuth(Credentials(AKID, SECRET), expires_at).add_auth(request)
    assert "x-amz-meta-plant=Tomato%201" in request.url
    parts = parts_of("PUT", request.url, {"content-length": "2"})
    assert auth(parts).presigned is True


def test_botocore_presigned_put_content_type_must_be_sent_as_a_header() -> None:
    """A Content-Type signed into a presigned URL must come back as the header."""
    expires_at = int(NOW) + 60
    request = AWSRequest(method="PUT", url=path_style_url("k"), headers={"Content-Type": "a/b"})
    FixedExpiryHmacV1QueryAuth(Credentials(AKID, SECRET), expires_at).add_auth(request)
    assert auth(parts_of("PUT", request.url, {"content-type": "a/b"})).presigned is True
    error = refusal(parts_of("PUT", request.url, {}))
    assert (error.status, error.code) == (403, "SignatureDoesNotMatch")


class _Captured(Exception):
    pass


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_boto3_client_with_signature_version_s3_verifies(style: str) -> None:
    """Real boto3 calls signed with signature_version="s3" verify as sent on the wire."""
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=BotoConfig(signature_version="s3", s3={"addressing_style": style}),
    )
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request)
        raise _Captured

    client.meta.events.register("before-send", capture)
    calls: list[Callable[[], object]] = [
        lambda: client.put_object(
            Bucket=BUCKET,
            Key="ä b/+c%.txt",
            Body=b"hi",
            ContentType="text/plain",
            Metadata={"plant": "tomato"},
        ),
        lambda: client.list_objects_v2(Bucket=BUCKET, Prefix="a b"),
        lambda: client.get_object_acl(Bucket=BUCKET, Key="k", VersionId="v 1"),
        lambda: client.create_multipart_upload(Bucket=BUCKET, Key="big file"),
        lambda: client.upload_part(
            Bucket=BUCKET, Key="big file", UploadId="u+1", PartNumber=2, Body=b"x"
        ),
    ]
    for call in calls:
        with pytest.raises(_Captured):
            call()
    now = time.time()
    for request in sent:
        parts = parts_of(request.method, request.url, dict(request.headers.items()))
        assert is_sigv2(parts)
        host = urlsplit(request.url).hostname or ""
        virtual = host.startswith(f"{BUCKET}.")
        assert virtual is (style == "virtual")
        assert v_auth(parts, virtual, now=now).presigned is False


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_boto3_default_presigned_url_with_custom_endpoint_is_sigv2_and_verifies(
    style: str,
) -> None:
    """boto3's default generate_presigned_url against an endpoint URL is SigV2 and verifies."""
    config = None if style == "path" else BotoConfig(s3={"addressing_style": "virtual"})
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=config,
    )
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": BUCKET,
            "Key": "company_1/plant_2/ü b+c.jpg",
            "ResponseContentDisposition": 'inline; filename="ü b.jpg"',
        },
        ExpiresIn=300,
    )
    parts = parts_of("GET", url, {"host": urlsplit(url).netloc})
    if "AWSAccessKeyId=" not in url:
        pytest.skip("this botocore presigns with SigV4 by default")
    assert is_sigv2(parts)
    virtual = (urlsplit(url).hostname or "").startswith(f"{BUCKET}.")
    assert v_auth(parts, virtual, now=time.time()).presigned is True
    error = refusal(
        parts, now=time.time() + 301, bucket=BUCKET if virtual else None, virtual_hosted=virtual
    )
    assert (error.status, error.code) == (403, "AccessDenied")


# ---------------------------------------------------------------------------
# One mutation, one status and code


HEADER_PUT = botocore_signed(
    "PUT",
    "company_1/plant_2/ü x.txt",
    query="tagging",
    headers={
        "Content-Type": "text/plain",
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "x-amz-meta-plant": "tomato",
    },
)
PRESIGNED_GET = botocore_signed(
    "GET",
    "company_1/plant_2/ü x.txt",
    query="response-content-type=text%2Fplain",
    presign_expires_at=int(NOW) + 600,
)


def with_headers(parts: RequestParts, **changes: str | None) -> RequestParts:
    headers = dict(parts.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return attrs.evolve(parts, headers=headers)


def with_query(
    parts: RequestParts, name: str, value: str | None, *, add: bool = False
) -> RequestParts:
    pairs = [(n, v) for n, v in parts.query if add or n != name]
    if value is not None:
        pairs.append((name, value))
    return attrs.evolve(parts, query=tuple(pairs))


def flip_last_char(signature: str) -> str:
    return signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]


def header_signature(parts: RequestParts) -> str:
    return parts.headers["authorization"].split(":", 1)[1]


SDNM = "SignatureDoesNotMatch"
_PUT_SIG = header_signature(HEADER_PUT)
_GET_SIG = dict(PRESIGNED_GET.query)["Signature"]
_1950 = "Tue, 07 Jul 1950 21:53:04 GMT"
_9999 = "Tue, 07 Jul 9999 21:53:04 GMT"

Mutation = tuple[RequestParts, dict[str, Any], int, str]

HEADER_MUTATIONS: dict[str, Mutation] = {
    "content-type": (with_headers(HEADER_PUT, content_type="text/html"), {}, 403, SDNM),
    "content-md5": (
        with_headers(HEADER_PUT, content_md5="XrY7u+Ae7tCTyyK7j1rNww=="),
        {},
        403,
        SDNM,
    ),
    "meta-value": (with_headers(HEADER_PUT, x_amz_meta_plant="potato"), {}, 403, SDNM),
    "meta-added": (with_headers(HEADER_PUT, x_amz_meta_extra="1"), {}, 403, SDNM),
    "meta-removed": (with_headers(HEADER_PUT, x_amz_meta_plant=None), {}, 403, SDNM),
    "method": (attrs.evolve(HEADER_PUT, method="POST"), {}, 403, SDNM),
    "path": (attrs.evolve(HEADER_PUT, raw_path=HEADER_PUT.raw_path + "x"), {}, 403, SDNM),
    "path-escape-case": (
        attrs.evolve(HEADER_PUT, raw_path=HEADER_PUT.raw_path.replace("%C3%BC", "%c3%bc")),
        {},
        403,
        SDNM,
    ),
    "subresource-removed": (with_query(HEADER_PUT, "tagging", None), {}, 403, SDNM),
    "subresource-added": (with_query(HEADER_PUT, "acl", ""), {}, 403, SDNM),
    "virtual-hosted": (HEADER_PUT, {"bucket": BUCKET, "virtual_hosted": True}, 403, SDNM),
    "key-id": (
        with_headers(HEADER_PUT, authorization=f"AWS AKIANOTKNOWN:{_PUT_SIG}"),
        {},
        403,
        "InvalidAccessKeyId",
    ),
    "signature-byte": (
        with_headers(HEADER_PUT, authorization=f"AWS {AKID}:{flip_last_char(_PUT_SIG)}"),
        {},
        403,
        SDNM,
    ),
    "date-ahead-16min": (HEADER_PUT, {"now": NOW - 16 * 60}, 403, "RequestTimeTooSkewed"),
    "date-behind-16min": (HEADER_PUT, {"now": NOW + 16 * 60}, 403, "RequestTimeTooSkewed"),
    "date-removed": (with_headers(HEADER_PUT, date=None), {}, 403, "AccessDenied"),
    "date-garbage": (with_headers(HEADER_PUT, date="Bad Date"), {}, 403, "AccessDenied"),
    "x-amz-date-empty": (with_headers(HEADER_PUT, x_amz_date=""), {}, 403, "AccessDenied"),
    "x-amz-date-1950": (with_headers(HEADER_PUT, x_amz_date=_1950), {}, 403, "AccessDenied"),
    "x-amz-date-9999": (
        with_headers(HEADER_PUT, x_amz_date=_9999),
        {},
        403,
        "RequestTimeTooSkewed",
    ),
    "auth-no-colon": (
        with_headers(HEADER_PUT, authorization="AWS HAHAHA"),
        {},
        400,
        "InvalidArgument",
    ),
    "auth-two-colons": (
        with_headers(HEADER_PUT, authorization=f"AWS {AKID}:a:b"),
        {},
        400,
        "InvalidArgument",
    ),
    "auth-two-spaces": (
        with_headers(HEADER_PUT, authorization=f"AWS  {AKID}:x"),
        {},
        400,
        "InvalidArgument",
    ),
    "plus-query-signature": (
        with_query(HEADER_PUT, "Signature", "x"),
        {},
        400,
        "InvalidArgument",
    ),
    "plus-query-v4": (
        with_query(HEADER_PUT, "X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        {},
        400,
        "InvalidArgument",
    ),
}

QUERY_MUTATIONS: dict[str, Mutation] = {
    "expired": (PRESIGNED_GET, {"now": NOW + 601}, 403, "AccessDenied"),
    "expires-extended": (
        with_query(PRESIGNED_GET, "Expires", str(int(NOW) + 6000)),
        {},
        403,
        SDNM,
    ),
    "expires-garbage": (with_query(PRESIGNED_GET, "Expires", "soon"), {}, 403, "AccessDenied"),
    "expires-removed": (with_query(PRESIGNED_GET, "Expires", None), {}, 403, "AccessDenied"),
    "signature-removed": (with_query(PRESIGNED_GET, "Signature", None), {}, 403, "AccessDenied"),
    "key-id": (
        with_query(PRESIGNED_GET, "AWSAccessKeyId", "AKIANOTKNOWN"),
        {},
        403,
        "InvalidAccessKeyId",
    ),
    "signature-byte": (
        with_query(PRESIGNED_GET, "Signature", flip_last_char(_GET_SIG)),
        {},
        403,
        SDNM,
    ),
    "override-changed": (
        with_query(PRESIGNED_GET, "response-content-type", "text%2Fhtml"),
        {},
        403,
        SDNM,
    ),
    "path": (attrs.evolve(PRESIGNED_GET, raw_path=PRESIGNED_GET.raw_path + "2"), {}, 403, SDNM),
    "method": (attrs.evolve(PRESIGNED_GET, method="DELETE"), {}, 403, SDNM),
    "content-type-sent": (with_headers(PRESIGNED_GET, content_type="text/plain"), {}, 403, SDNM),
    "x-amz-meta-sent": (with_headers(PRESIGNED_GET, x_amz_meta_a="1"), {}, 403, SDNM),
    "plus-authorization": (
        with_headers(PRESIGNED_GET, authorization="AWS a:b"),
        {},
        400,
        "InvalidArgument",
    ),
    "plus-query-v4": (
        with_query(PRESIGNED_GET, "X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        {},
        400,
        "InvalidArgument",
    ),
}


def test_mutation_baselines_verify() -> None:
    """The unmutated requests of both tables verify."""
    assert auth(HEADER_PUT).presigned is False
    assert auth(PRESIGNED_GET).presigned is True


@pytest.mark.parametrize("name", sorted(HEADER_MUTATIONS))
def test_header_auth_mutation(name: str) -> None:
    """One change to a valid header-signed request gives one status and S3 code."""
    parts, kwargs, status, code = HEADER_MUTATIONS[name]
    error = refusal(parts, **kwargs)
    assert (error.status, error.code) == (status, code), error


@pytest.mark.parametrize("name", sorted(QUERY_MUTATIONS))
def test_query_auth_mutation(name: str) -> None:
    """One change to a valid presigned URL gives one status and S3 code."""
    parts, kwargs, status, code = QUERY_MUTATIONS[name]
    error = refusal(parts, **kwargs)
    assert (error.status, error.code) == (status, code), error


def test_unsigned_query_parameters_may_change() -> None:
    """Parameters outside the sub-resource list are not signed (e.g. a cache-buster)."""
    assert auth(with_query(HEADER_PUT, "cb", "123")).access_key_id == AKID
    assert auth(with_query(PRESIGNED_GET, "x-id", "GetObject")).presigned is True


# ---------------------------------------------------------------------------
# Error bodies as S3 words them


def test_signature_mismatch_carries_s3s_v2_details() -> None:
    """SignatureDoesNotMatch lists AWSAccessKeyId, StringToSign, SignatureProvided, bytes."""
    bad = flip_last_char(header_signature(HEADER_PUT))
    error = refusal(with_headers(HEADER_PUT, authorization=f"AWS {AKID}:{bad}"))
    assert list(error.extra) == [
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "StringToSignBytes",
    ]
    expected = (
        "PUT\n1B2M2Y8AsgTpgAmY7PhCfg==\ntext/plain\nWed, 01 May 2024 12:00:00 GMT\n"
        "x-amz-meta-plant:tomato\n/plantdb-inbox/company_1/plant_2/%C3%BC%20x.txt?tagging"
    )
    assert error.extra["StringToSign"] == expected
    assert error.extra["AWSAccessKeyId"] == AKID
    assert error.extra["SignatureProvided"] == bad
    assert error.extra["StringToSignBytes"].startswith("50 55 54 0a 31 42")
    assert SECRET not in str(error.extra)


def test_expired_url_reports_expiry_and_server_time() -> None:
    """ "Request has expired" carries Expires and ServerTime in ISO 8601."""
    error = refusal(PRESIGNED_GET, now=NOW + 601.5)
    assert error.message == "Request has expired"
    assert error.extra == {"Expires": "2024-05-01T12:10:00Z", "ServerTime": "2024-05-01T12:10:01Z"}


def test_skew_reports_request_and_server_time() -> None:
    """RequestTimeTooSkewed echoes the Date as sent and the 900000 ms allowance."""
    error = refusal(HEADER_PUT, now=NOW + 3600)
    assert error.extra == {
        "RequestTime": "Wed, 01 May 2024 12:00:00 GMT",
        "ServerTime": "2024-05-01T13:00:00Z",
        "MaxAllowedSkewMilliseconds": "900000",
    }


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("AWS HAHAHA", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"),
        ("AWS key:", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"),
        ("AWS", "Authorization header is invalid -- one and only one ' ' (space) required"),
        ("AWS a:b c", "Authorization header is invalid -- one and only one ' ' (space) required"),
        ("Basic dXNlcjpwYXNz", "Unsupported Authorization Type"),
    ],
)
def test_malformed_authorization_is_invalid_argument(authorization: str, message: str) -> None:
    """A malformed ``AWS`` header is 400 InvalidArgument naming the header and its value."""
    error = refusal(with_headers(HEADER_PUT, authorization=authorization))
    assert (error.status, error.code, error.message) == (400, "InvalidArgument", message)
    assert error.extra == {"ArgumentName": "Authorization", "ArgumentValue": authorization}


def test_missing_date_wording() -> None:
    """No Date and no x-amz-date: AccessDenied with S3's sentence."""
    error = refusal(with_headers(HEADER_PUT, date=None))
    assert error.message == "AWS authentication requires a valid Date or x-amz-date header"


def test_unknown_key_names_the_key() -> None:
    """InvalidAccessKeyId echoes the key id, as S3 does."""
    error = refusal(with_query(PRESIGNED_GET, "AWSAccessKeyId", "AKIANOTKNOWN"))
    assert error.extra == {"AWSAccessKeyId": "AKIANOTKNOWN"}


def test_missing_query_parameter_wording() -> None:
    """A query missing one of the three SigV2 parameters is AccessDenied naming all three."""
    error = refusal(with_query(PRESIGNED_GET, "Expires", None))
    assert error.message == (
        "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
    )


# ---------------------------------------------------------------------------
# Time boundaries


def test_skew_allows_exactly_fifteen_minutes() -> None:
    """900 s of skew passes, 901 s does not."""
    assert auth(HEADER_PUT, now=NOW + 900).access_key_id == AKID
    assert auth(HEADER_PUT, now=NOW - 900).access_key_id == AKID
    assert refusal(HEADER_PUT, now=NOW + 901).code == "RequestTimeTooSkewed"


def test_presigned_url_is_valid_through_its_expires_second() -> None:
    """Expires == now still verifies; query auth has no skew window before it."""
    assert auth(PRESIGNED_GET, now=NOW + 600).presigned is True
    assert auth(PRESIGNED_GET, now=0).presigned is True


def test_x_amz_date_takes_precedence_over_date() -> None:
    """With both, the request time is x-amz-date's and Date is not signed."""
    amz_date = formatdate(NOW + 60, usegmt=True)
    text = f"GET\n\n\n\nx-amz-date:{amz_date}\n/b/k"
    parts = RequestParts(
        "GET",
        "/b/k",
        (),
        {
            "date": "Mon, 01 Jan 2001 00:00:00 GMT",
            "x-amz-date": amz_date,
            "authorization": f"AWS {AKID}:{sign_v2(SECRET, text)}",
        },
    )
    assert auth(parts).amz_date == "20240501T120100Z"


# ---------------------------------------------------------------------------
# Detection


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"authorization": "AWS a:b"}, "", True),
        ({"authorization": "AWS4-HMAC-SHA256 Credential=a/b"}, "", False),
        ({"authorization": "AWSX a:b"}, "", False),
        ({}, "AWSAccessKeyId=a&Signature=b&Expires=1", True),
        ({}, "Signature=b", True),
        ({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256", False),
        ({}, "acl", False),
        ({}, "", False),
    ],
)
def test_is_sigv2(headers: dict[str, str], query: str, expected: bool) -> None:
    """SigV2 is the ``AWS`` header scheme or the AWSAccessKeyId/Signature query."""
    pairs, _ = parse_query(query)
    assert is_sigv2(RequestParts("GET", "/", pairs, headers)) is expected


def test_neither_mechanism_is_access_denied() -> None:
    """Called without any SigV2 marker, the verdict is AccessDenied."""
    assert refusal(RequestParts("GET", "/", (), {})).code == "AccessDenied"


# ---------------------------------------------------------------------------
# Properties

_texts = st.text(st.characters(codec="utf-8"), max_size=30)
_latin1 = st.text(st.characters(codec="latin-1"), max_size=30)


@st.composite
def random_parts(draw: st.DrawFn) -> RequestParts:
    names = st.sampled_from(
        ["AWSAccessKeyId", "Signature", "Expires", "X-Amz-Algorithm", "acl", "versionId",
         "response-content-type", "x-amz-meta-a", "uploads", "other"]
    )  # fmt: skip
    query = draw(st.lists(st.tuples(st.one_of(names, _texts), _texts), max_size=6))
    header_names = st.sampled_from(
        ["authorization", "date", "x-amz-date", "content-type", "content-md5", "x-amz-meta-a"]
    )
    headers = draw(st.dictionaries(header_names, _latin1, max_size=6))
    if draw(st.booleans()):
        key = draw(st.sampled_from([AKID, "", "other"]))
        headers["authorization"] = (
            "AWS " + key + draw(st.sampled_from([":", "", "::"])) + draw(_latin1)
        )
    method = draw(st.sampled_from(["GET", "PUT", "HEAD", "delete", ""]))
    return RequestParts(method, draw(_texts), tuple(query), headers)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    parts=random_parts(),
    now=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    bucket=st.one_of(st.none(), _texts),
    virtual=st.booleans(),
)
def test_random_parts_only_ever_raise_s3error(
    parts: RequestParts, now: float, bucket: str | None, virtual: bool
) -> None:
    """Whatever arrives, the verdict is an AuthResult or an S3Error, never a crash."""
    try:
        authenticate_v2(parts, CREDS, now=now, bucket=bucket, virtual_hosted=virtual)
    except S3Error as error:
        assert error.status in (400, 403)


@settings(max_examples=150, deadline=None)
@given(
    key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    meta=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=20,
    ),
    virtual=st.booleans(),
    presigned=st.booleans(),
)
def test_any_key_botocore_signs_verifies(
    key: str, meta: str, virtual: bool, presigned: bool
) -> None:
    """Any key and Latin-1 metadata botocore signs verifies, header or presigned."""
    parts = botocore_signed(
        "PUT",
        key,
        headers={"x-amz-meta-note": meta, "Content-Type": "application/octet-stream"},
        virtual_hosted=virtual,
        presign_expires_at=int(NOW) + 60 if presigned else None,
    )
    if presigned:
        parts = with_headers(parts, content_type="application/octet-stream")
    assert v_auth(parts, virtual).presigned is presigned
