"""SigV4 verification: AWS's published vectors, botocore-signed requests, one-mutation tables."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import attrs
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.sigv4 import (
    EMPTY_SHA256,
    AuthResult,
    RequestParts,
    authenticate,
    canonical_query_string,
    canonical_uri,
    derive_signing_key,
)

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = {AKID: Credential(AKID, SECRET)}
REGION = "us-east-1"
HOST = "examplebucket.s3.amazonaws.com"
#: 20130524T000000Z, the instant of every example in the S3 SigV4 docs.
EXAMPLE_NOW = datetime(2013, 5, 24, tzinfo=UTC).timestamp()


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    pairs = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        pairs.append((name, value))
    return tuple(pairs)


def auth(parts: RequestParts, *, now: float = EXAMPLE_NOW, region: str = REGION) -> AuthResult:
    return authenticate(parts, CREDS, now=now, region=region)


def expect_error(parts: RequestParts, status: int, code: str, **kwargs: float | str) -> S3Error:
    with pytest.raises(S3Error) as info:
        authenticate(parts, CREDS, now=float(kwargs.get("now", EXAMPLE_NOW)), region=REGION)
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


# ---------------------------------------------------------------------------
# AWS's published examples ("Signature Calculations for the Authorization
# Header: Transferring Payload in a Single Chunk" and "Authenticating Requests:
# Using Query Parameters").


def header_example(
    method: str, path: str, query: str, headers: Mapping[str, str], signed: str, signature: str
) -> RequestParts:
    all_headers = {"host": HOST, **headers}
    all_headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={signature}"
    )
    return RequestParts(method, path, parse_query(query), all_headers)


GET_OBJECT = header_example(
    "GET",
    "/test.txt",
    "",
    {
        "range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    },
    "host;range;x-amz-content-sha256;x-amz-date",
    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
)
PUT_OBJECT = header_example(
    "PUT",
    "/test$file.text",
    "",
    {
        "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
    },
    "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
)
GET_LIFECYCLE = header_example(
    "GET",
    "/",
    "lifecycle",
    {"x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z"},
    "host;x-amz-content-sha256;x-amz-date",
    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
)
LIST_OBJECTS = header_example(
    "GET",
    "/",
    "max-keys=2&prefix=J",
    {"x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z"},
    "host;x-amz-content-sha256;x-amz-date",
    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
)
PRESIGNED_GET = RequestParts(
    "GET",
    "/test.txt",
    parse_query(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    ),
    {"host": HOST},
)


@pytest.mark.parametrize(
    "parts", [GET_OBJECT, PUT_OBJECT, GET_LIFECYCLE, LIST_OBJECTS], ids=lambda p: p.raw_path
)
def test_aws_documented_header_examples_verify(parts: RequestParts) -> None:
    """Each example from the S3 SigV4 header-auth page verifies with the example key."""
    result = auth(parts)
    assert result.access_key_id == AKID
    assert result.scope == "20130524/us-east-1/s3/aws4_request"
    assert result.amz_date == "20130524T000000Z"
    assert result.presigned is False
    assert result.payload_hash == parts.headers["x-amz-content-sha256"]


def test_aws_documented_presigned_example_verifies_within_its_day() -> None:
    """The documented presigned GET verifies until 86400 s after its X-Amz-Date."""
    result = auth(PRESIGNED_GET, now=EXAMPLE_NOW + 86400)
    assert result.presigned is True
    assert result.payload_hash == "UNSIGNED-PAYLOAD"


def test_aws_documented_seed_signature_is_exposed_for_chunk_verification() -> None:
    """The verified signature and signing key come back for the aws-chunked decoder."""
    result = auth(GET_OBJECT)
    assert result.seed_signature == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert result.signing_key == derive_signing_key(SECRET, "20130524", "us-east-1", "s3")
    assert "signing_key" not in repr(result) and SECRET not in repr(result)


def test_derive_signing_key_matches_aws_example() -> None:
    """kSigning for the IAM docs' example key/date/region/service (iam example)."""
    # The IAM general reference example uses a '+' where the S3 examples use '/'.
    iam_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    key = derive_signing_key(iam_secret, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


# ---------------------------------------------------------------------------
# Canonicalisation


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/test$file.text", "/test%24file.text"),
        ("/b/a%20b", "/b/a%20b"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/./../x//y", "/b/./../x//y"),
        ("/b/caf%C3%A9", "/b/caf%C3%A9"),
        ("/b/%7Etilde~", "/b/~tilde~"),
        ("/b/a%2fb", "/b/a/b"),
    ],
)
def test_canonical_uri_is_reencoded_but_never_normalised(raw: str, canonical: str) -> None:
    """S3 keeps dot segments and double slashes; only UriEncode's set stays literal."""
    assert canonical_uri(raw) == canonical


def test_canonical_query_decodes_reencodes_and_sorts_by_name_then_value() -> None:
    """Names and values are UriEncoded (space %20, '+' %2B) and sorted."""
    query = parse_query("b=2&a=z&a=y&flag&c=a+b&d=%7e&e=x%20y")
    assert canonical_query_string(query) == "a=y&a=z&b=2&c=a%2Bb&d=~&e=x%20y&flag="


def test_canonical_query_excludes_only_the_presigned_signature() -> None:
    """X-Amz-Signature is left out of presigned canonical queries only."""
    query = parse_query("X-Amz-Signature=abc&x=1")
    assert canonical_query_string(query, exclude_signature=True) == "x=1"
    assert canonical_query_string(query) == "X-Amz-Signature=abc&x=1"


def test_header_values_are_trimmed_and_inner_spaces_collapsed() -> None:
    """Signed header values compare after Trimall, as the signer computed them."""
    headers = dict(GET_OBJECT.headers, range="   bytes=0-9   ")
    auth(attrs.evolve(GET_OBJECT, headers=headers))


# ---------------------------------------------------------------------------
# botocore-signed requests


def to_parts(request: AWSRequest) -> RequestParts:
    """What the HTTP layer would see for a botocore request sent on the wire."""
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    headers = {name.lower(): value for name, value in prepared.headers.items()}
    headers.setdefault("host", split.netloc)
    return RequestParts(prepared.method, split.path, parse_query(split.query), headers)


def botocore_header_signed(
    method: str = "PUT",
    key: str = "photos/cat.jpg",
    query: str = "",
    body: bytes = b"hello world",
    headers: Mapping[str, str] | None = None,
    *,
    url_path: str | None = None,
    region: str = REGION,
) -> RequestParts:
    path = url_path if url_path is not None else "/bucket/" + quote(key, safe="/~")
    url = f"http://localhost:8080{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(AKID, SECRET), "s3", region).add_auth(request)
    return to_parts(request)


class LiteralPayloadAuth(S3SigV4Auth):
    """Sign with a fixed x-amz-content-sha256, as SDKs do for aws-chunked bodies."""

    def __init__(self, literal: str) -> None:
        super().__init__(Credentials(AKID, SECRET), "s3", REGION)
        self._literal = literal

    def payload(self, request: AWSRequest) -> str:
        return self._literal


def botocore_presigned(
    method: str = "GET",
    key: str = "photos/cat.jpg",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    expires: int = 3600,
) -> RequestParts:
    url = "http://localhost:8080/bucket/" + quote(key, safe="/~") + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(Credentials(AKID, SECRET), "s3", REGION, expires=expires).add_auth(request)
    return to_parts(request)


def signed_at(parts: RequestParts) -> float:
    """The X-Amz-Date a request carries, as POSIX time (the 'now' it was signed at)."""
    text = parts.headers.get("x-amz-date") or dict(parts.query)["X-Amz-Date"]
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


KEYS = [
    "plain.txt",
    "with space/and more spaces.txt",
    "unicode/café-日本語-ß.png",
    "tilde~and!bang",
    "plus+equals=amp&semi;colon:at@",
    "quote'paren(x)*star,comma",
    "percent%25literal%",
    "dots/./../segments//double",
    "$dollar#hash?question[brackets]",
]


@pytest.mark.parametrize("key", KEYS)
def test_botocore_header_signed_keys_verify(key: str) -> None:
    """Keys with spaces, unicode and reserved characters verify as botocore signs them."""
    parts = botocore_header_signed(key=key, headers={"Content-Type": "image/png"})
    result = auth(parts, now=signed_at(parts))
    assert result.payload_hash == hashlib.sha256(b"hello world").hexdigest()


@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_keys_verify(key: str) -> None:
    """Presigned URLs for awkward keys verify and carry UNSIGNED-PAYLOAD."""
    parts = botocore_presigned(key=key)
    result = auth(parts, now=signed_at(parts))
    assert result.presigned is True
    assert result.payload_hash == "UNSIGNED-PAYLOAD"


@pytest.mark.parametrize(
    "query",
    [
        "uploads=",
        "partNumber=2&uploadId=abc%2Bdef%3D%3D",
        "list-type=2&prefix=a%20b%2Fc&delimiter=%2F",
        "response-content-disposition=attachment%3B%20filename%3D%22x.txt%22",
        "versionId=~v1&tagging",
    ],
)
def test_botocore_signed_query_strings_verify(query: str) -> None:
    """Sub-resources and encoded values sort and encode as botocore signed them."""
    parts = botocore_header_signed(method="GET", query=query, body=b"")
    auth(parts, now=signed_at(parts))
    presigned = botocore_presigned(query=query)
    auth(presigned, now=signed_at(presigned))


def test_raw_path_is_tried_when_client_signed_unencoded_characters() -> None:
    """A client that signs '!' and ',' unencoded, exactly as sent, still verifies."""
    parts = botocore_header_signed(url_path="/bucket/hello!world,x")
    assert parts.raw_path == "/bucket/hello!world,x"
    auth(parts, now=signed_at(parts))


def test_streaming_payload_hash_is_returned_for_the_chunk_decoder() -> None:
    """A STREAMING-* content hash passes verification and is reported as signed."""
    request = AWSRequest(
        method="PUT",
        url="http://localhost:8080/bucket/k",
        data=b"b\r\nhello world\r\n0\r\n\r\n",
        headers={
            "Content-Encoding": "aws-chunked",
            "X-Amz-Trailer": "x-amz-checksum-crc32",
            "X-Amz-Decoded-Content-Length": "11",
        },
    )
    LiteralPayloadAuth("STREAMING-UNSIGNED-PAYLOAD-TRAILER").add_auth(request)
    parts = to_parts(request)
    assert auth(parts, now=signed_at(parts)).payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


# ---------------------------------------------------------------------------
# One mutation, one verdict: header auth

BASE = botocore_header_signed(
    query="x-id=PutObject",
    headers={
        "Content-Type": "text/plain",
        "Cache-Control": "max-age=60",
        "x-amz-meta-colour": "green",
    },
)
BASE_NOW = signed_at(BASE)


def with_headers(parts: RequestParts, **changes: str | None) -> RequestParts:
    headers = dict(parts.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return attrs.evolve(parts, headers=headers)


def with_authorization(transform: Callable[[str], str]) -> Callable[[RequestParts], RequestParts]:
    return lambda p: with_headers(p, authorization=transform(p.headers["authorization"]))


def flip_last_signature_char(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


HEADER_MUTATIONS: dict[str, tuple[Callable[[RequestParts], RequestParts], int, str]] = {
    "content-type altered": (
        lambda p: with_headers(p, content_type="text/html"),
        403,
        "SignatureDoesNotMatch",
    ),
    "cache-control altered": (
        lambda p: with_headers(p, cache_control="no-cache"),
        403,
        "SignatureDoesNotMatch",
    ),
    "metadata value altered": (
        lambda p: with_headers(p, x_amz_meta_colour="red"),
        403,
        "SignatureDoesNotMatch",
    ),
    "path altered": (
        lambda p: attrs.evolve(p, raw_path=p.raw_path + "x"),
        403,
        "SignatureDoesNotMatch",
    ),
    "method altered": (lambda p: attrs.evolve(p, method="POST"), 403, "SignatureDoesNotMatch"),
    "query value altered": (
        lambda p: attrs.evolve(p, query=(("x-id", "GetObject"),)),
        403,
        "SignatureDoesNotMatch",
    ),
    "query parameter added": (
        lambda p: attrs.evolve(p, query=(*p.query, ("acl", ""))),
        403,
        "SignatureDoesNotMatch",
    ),
    "date moved by a second": (
        lambda p: with_headers(
            p,
            x_amz_date=p.headers["x-amz-date"][:-3]
            + f"{(int(p.headers['x-amz-date'][-3:-1]) + 1) % 60:02d}Z",
        ),
        403,
        "SignatureDoesNotMatch",
    ),
    "signature byte flipped": (
        with_authorization(flip_last_signature_char),
        403,
        "SignatureDoesNotMatch",
    ),
    "unknown access key": (
        with_authorization(lambda a: a.replace(AKID, "AKIAUNKNOWNKEY000000")),
        403,
        "InvalidAccessKeyId",
    ),
    "wrong region": (
        with_authorization(lambda a: a.replace("/us-east-1/", "/eu-west-1/")),
        400,
        "AuthorizationHeaderMalformed",
    ),
    "wrong service": (
        with_authorization(lambda a: a.replace("/s3/", "/s4/")),
        400,
        "AuthorizationHeaderMalformed",
    ),
    "credential date differs from x-amz-date": (
        with_authorization(
            lambda a: a.replace("Credential=" + AKID + "/", "Credential=" + AKID + "/1")
        ),
        400,
        "AuthorizationHeaderMalformed",
    ),
    "signature component missing": (
        with_authorization(lambda a: re.split(r", ?Signature=", a)[0]),
        400,
        "AuthorizationHeaderMalformed",
    ),
    "unsupported algorithm": (
        with_authorization(lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")),
        400,
        "InvalidArgument",
    ),
    "sigv2 header": (
        lambda p: with_headers(p, authorization=f"AWS {AKID}:c2lnbmF0dXJl"),
        400,
        "InvalidRequest",
    ),
    "unsigned x-amz header added": (
        lambda p: with_headers(p, x_amz_meta_extra="1"),
        403,
        "AccessDenied",
    ),
    "x-amz-content-sha256 removed": (
        lambda p: with_headers(p, x_amz_content_sha256=None),
        400,
        "InvalidRequest",
    ),
    "x-amz-content-sha256 invalid": (
        lambda p: with_headers(p, x_amz_content_sha256="not-a-hash"),
        400,
        "InvalidArgument",
    ),
    "x-amz-date removed": (lambda p: with_headers(p, x_amz_date=None), 403, "AccessDenied"),
    "x-amz-date garbage": (lambda p: with_headers(p, x_amz_date="yesterday"), 403, "AccessDenied"),
    "no authentication at all": (
        lambda p: with_headers(p, authorization=None),
        403,
        "AccessDenied",
    ),
    "header and query auth together": (
        lambda p: attrs.evolve(p, query=(*p.query, ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))),
        400,
        "InvalidArgument",
    ),
}


def test_unmutated_base_request_verifies() -> None:
    """The table's starting point is a valid botocore-signed PUT."""
    auth(BASE, now=BASE_NOW)


@pytest.mark.parametrize("name", list(HEADER_MUTATIONS))
def test_header_auth_mutation_is_refused(name: str) -> None:
    """One change to a valid signed request gives exactly one status and code."""
    mutate, status, code = HEADER_MUTATIONS[name]
    expect_error(mutate(BASE), status, code, now=BASE_NOW)


def test_signature_mismatch_reports_canonical_request_but_not_secret() -> None:
    """SignatureDoesNotMatch carries the AWS diagnostics, never the secret key."""
    error = expect_error(
        with_headers(BASE, content_type="text/html"), 403, "SignatureDoesNotMatch", now=BASE_NOW
    )
    assert error.extra["AWSAccessKeyId"] == AKID
    assert "content-type:text/html" in error.extra["CanonicalRequest"]
    assert error.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n")
    assert SECRET not in repr(error.extra)


def test_wrong_region_names_the_expected_region() -> None:
    """AWS's wording and the <Region> element tell the client where to sign."""
    error = expect_error(
        HEADER_MUTATIONS["wrong region"][0](BASE), 400, "AuthorizationHeaderMalformed", now=BASE_NOW
    )
    assert error.message == (
        "The authorization header is malformed; the region 'eu-west-1' is wrong; "
        "expecting 'us-east-1'"
    )
    assert error.extra == {"Region": "us-east-1"}


def test_unknown_key_names_the_key() -> None:
    """InvalidAccessKeyId echoes the access key id the client used."""
    error = expect_error(
        HEADER_MUTATIONS["unknown access key"][0](BASE), 403, "InvalidAccessKeyId", now=BASE_NOW
    )
    assert error.extra == {"AWSAccessKeyId": "AKIAUNKNOWNKEY000000"}


def test_unsigned_amz_headers_are_listed() -> None:
    """AccessDenied names every x-amz-* header that was present but not signed."""
    error = expect_error(
        with_headers(BASE, x_amz_meta_b="1", x_amz_acl="private"), 403, "AccessDenied", now=BASE_NOW
    )
    assert error.message == "There were headers present in the request which were not signed"
    assert error.extra == {"HeadersNotSigned": "x-amz-acl, x-amz-meta-b"}


@pytest.mark.parametrize("offset", [-901, 901, 3600])
def test_clock_skew_beyond_fifteen_minutes_is_refused(offset: int) -> None:
    """Header-signed requests are refused when 15 minutes or more from server time."""
    error = expect_error(BASE, 403, "RequestTimeTooSkewed", now=BASE_NOW + offset)
    assert error.extra["RequestTime"] == BASE.headers["x-amz-date"]
    assert error.extra["MaxAllowedSkewMilliseconds"] == "900000"
    assert error.extra["ServerTime"].endswith("Z")


@pytest.mark.parametrize("offset", [-900, 0, 900])
def test_clock_skew_within_fifteen_minutes_is_accepted(offset: int) -> None:
    """Up to and including 15 minutes of skew the request verifies."""
    auth(BASE, now=BASE_NOW + offset)


def test_date_header_alone_dates_the_request() -> None:
    """Without x-amz-date the RFC 1123 Date header dates the request and the signature."""
    headers = {
        "host": HOST,
        "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-content-sha256": EMPTY_SHA256,
    }
    canonical_request = "\n".join(
        [
            "GET",
            "/test.txt",
            "",
            f"date:{headers['date']}\nhost:{HOST}\nx-amz-content-sha256:{EMPTY_SHA256}\n",
            "date;host;x-amz-content-sha256",
            EMPTY_SHA256,
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = derive_signing_key(SECRET, "20130524", "us-east-1", "s3")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders=date;host;x-amz-content-sha256, Signature={signature}"
    )
    result = auth(RequestParts("GET", "/test.txt", (), headers))
    assert result.amz_date == "20130524T000000Z"
    expect_error(
        RequestParts("GET", "/test.txt", (), headers),
        403,
        "RequestTimeTooSkewed",
        now=EXAMPLE_NOW + 901,
    )


def test_sigv2_is_refused_with_aws_wording() -> None:
    """SigV2 gets S3's 'please use AWS4-HMAC-SHA256' InvalidRequest."""
    error = expect_error(HEADER_MUTATIONS["sigv2 header"][0](BASE), 400, "InvalidRequest")
    assert error.message == (
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256."
    )


# ---------------------------------------------------------------------------
# One mutation, one verdict: presigned URLs

PRESIGNED = botocore_presigned(method="PUT", expires=600)
PRESIGNED_NOW = signed_at(PRESIGNED)


def with_param(parts: RequestParts, name: str, value: str | None) -> RequestParts:
    query = [(n, v) for n, v in parts.query if n != name]
    if value is not None:
        query.append((name, value))
    return attrs.evolve(parts, query=tuple(query))


PRESIGNED_MUTATIONS: dict[str, tuple[Callable[[RequestParts], RequestParts], float, int, str]] = {
    "expired": (lambda p: p, 601, 403, "AccessDenied"),
    "not yet valid": (lambda p: p, -901, 403, "AccessDenied"),
    "expires over a week": (
        lambda p: with_param(p, "X-Amz-Expires", "604801"),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "expires negative": (
        lambda p: with_param(p, "X-Amz-Expires", "-1"),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "expires not a number": (
        lambda p: with_param(p, "X-Amz-Expires", "soon"),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "expires lengthened": (
        lambda p: with_param(p, "X-Amz-Expires", "601"),
        0,
        403,
        "SignatureDoesNotMatch",
    ),
    "signature missing": (
        lambda p: with_param(p, "X-Amz-Signature", None),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "algorithm wrong": (
        lambda p: with_param(p, "X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "date malformed": (
        lambda p: with_param(p, "X-Amz-Date", "2013-05-24T00:00:00Z"),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "credential malformed": (
        lambda p: with_param(p, "X-Amz-Credential", AKID),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "wrong region": (
        lambda p: with_param(
            p,
            "X-Amz-Credential",
            dict(p.query)["X-Amz-Credential"].replace("us-east-1", "eu-west-1"),
        ),
        0,
        400,
        "AuthorizationQueryParametersError",
    ),
    "unknown access key": (
        lambda p: with_param(
            p, "X-Amz-Credential", dict(p.query)["X-Amz-Credential"].replace(AKID, "AKIANOBODY")
        ),
        0,
        403,
        "InvalidAccessKeyId",
    ),
    "signature byte flipped": (
        lambda p: with_param(
            p, "X-Amz-Signature", flip_last_signature_char(dict(p.query)["X-Amz-Signature"])
        ),
        0,
        403,
        "SignatureDoesNotMatch",
    ),
    "path altered": (
        lambda p: attrs.evolve(p, raw_path="/bucket/other.jpg"),
        0,
        403,
        "SignatureDoesNotMatch",
    ),
    "query parameter added": (
        lambda p: attrs.evolve(p, query=(("acl", ""), *p.query)),
        0,
        403,
        "SignatureDoesNotMatch",
    ),
    "host altered": (
        lambda p: with_headers(p, host="evil.example"),
        0,
        403,
        "SignatureDoesNotMatch",
    ),
    "unsigned x-amz header added": (
        lambda p: with_headers(p, x_amz_acl="public-read"),
        0,
        403,
        "AccessDenied",
    ),
}


def test_unmutated_presigned_url_verifies_until_it_expires() -> None:
    """The presigned PUT verifies from signing time through its last second."""
    auth(PRESIGNED, now=PRESIGNED_NOW)
    auth(PRESIGNED, now=PRESIGNED_NOW + 600)


@pytest.mark.parametrize("name", list(PRESIGNED_MUTATIONS))
def test_presigned_mutation_is_refused(name: str) -> None:
    """One change to a valid presigned URL gives exactly one status and code."""
    mutate, offset, status, code = PRESIGNED_MUTATIONS[name]
    expect_error(mutate(PRESIGNED), status, code, now=PRESIGNED_NOW + offset)


def test_expired_presigned_url_reports_aws_elements() -> None:
    """'Request has expired' carries X-Amz-Expires, Expires and ServerTime."""
    error = expect_error(PRESIGNED, 403, "AccessDenied", now=PRESIGNED_NOW + 601)
    assert error.message == "Request has expired"
    assert list(error.extra) == ["X-Amz-Expires", "Expires", "ServerTime"]
    assert error.extra["X-Amz-Expires"] == "600"


def test_presigned_url_from_the_future_is_not_yet_valid() -> None:
    """An X-Amz-Date more than 15 minutes ahead is 'Request is not yet valid'."""
    error = expect_error(PRESIGNED, 403, "AccessDenied", now=PRESIGNED_NOW - 901)
    assert error.message == "Request is not yet valid"
    auth(PRESIGNED, now=PRESIGNED_NOW - 900)


def test_presigned_expires_over_a_week_uses_aws_wording() -> None:
    """The one-week cap is reported in S3's words."""
    error = expect_error(
        with_param(PRESIGNED, "X-Amz-Expires", "604801"),
        400,
        "AuthorizationQueryParametersError",
        now=PRESIGNED_NOW,
    )
    assert error.message == (
        "X-Amz-Expires must be less than a week (in seconds); that is, the given "
        "X-Amz-Expires must be less than 604800 seconds"
    )


def test_presigned_week_long_expiry_is_accepted() -> None:
    """X-Amz-Expires of exactly 604800 is allowed (it is only checked against the signature)."""
    parts = botocore_presigned(expires=604800)
    auth(parts, now=signed_at(parts) + 604800)


def test_presigned_payload_hash_from_query_parameter_is_returned() -> None:
    """X-Amz-Content-Sha256 in a presigned URL becomes the payload hash to check."""
    digest = hashlib.sha256(b"body").hexdigest()
    request = AWSRequest(
        method="PUT",
        url="http://localhost:8080/bucket/k",
        headers={"X-Amz-Content-SHA256": digest},
    )
    # botocore signs a presigned request's X-Amz-Content-SHA256 header as the
    # payload hash; the header itself must then be sent (and is signed).
    S3SigV4QueryAuth(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    parts = to_parts(request)
    assert auth(parts, now=signed_at(parts)).payload_hash == digest
