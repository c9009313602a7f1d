"""Pure AWS Signature Version 2 verification for S3 requests.

Why this exists: boto3's ``generate_presigned_url`` with a default client
config and a custom ``endpoint_url`` still produces SigV2 query URLs
(``?AWSAccessKeyId=..&Signature=..&Expires=..``), and S3 in us-east-1 still
accepts them, so code written against S3 must keep working here unchanged.

No I/O and no Twisted, like :mod:`plantcdn.sigv4`: the HTTP layer hands over
the request parts, the known credentials, the current time and how the bucket
was addressed, and gets back an :class:`~plantcdn.sigv4.AuthResult` or the
:class:`~plantcdn.errors.S3Error` S3 would send.

AWS page followed: "Signing and authenticating REST requests (AWS signature
version 2)" (Amazon S3 User Guide / API Reference, ``RESTAuthentication``):
the ``Authorization: AWS AccessKeyId:Signature`` header, the StringToSign,
CanonicalizedAmzHeaders, CanonicalizedResource with its sub-resource list, the
time stamp requirement and the query string authentication alternative.

Where that page is silent or contradicts itself, behaviour follows what the
signers that talk to S3 every day do (botocore's ``HmacV1Auth`` and
``HmacV1QueryAuth``), and error wording follows S3's own answers as quoted by
S3 emulators and the ceph ``s3-tests`` suite (``auth_aws2`` cases).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.sigv4 import MAX_SKEW_SECONDS, UNSIGNED_PAYLOAD, AuthResult, RequestParts

__all__ = [
    "SUB_RESOURCES",
    "authenticate_v2",
    "canonical_amz_headers",
    "canonical_resource",
    "is_sigv2",
    "sign_v2",
    "string_to_sign",
]

#: Query parameters that are part of the CanonicalizedResource.  The
#: RESTAuthentication page lists acl, lifecycle, location, logging,
#: notification, partNumber, policy, requestPayment, uploadId, uploads,
#: versionId, versioning, versions, website, the six ``response-*`` overrides
#: and ``delete``; the SDKs that sign for S3 (botocore's ``HmacV1Auth``,
#: aws-sdk-js and aws-sdk-java v1) add the sub-resources S3 gained since.  This
#: is botocore's list, which contains all of the others.
SUB_RESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)

_V2_QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_EXPIRES = re.compile(r"-?[0-9]{1,19}", re.ASCII)
_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"


# --------------------------------------------------------------------------
# Detection


def is_sigv2(parts: RequestParts) -> bool:
    """Whether *parts* carries a SigV2 signature (header or query string).

    True for ``Authorization: AWS ...`` (scheme exactly ``AWS``) and for a query
    naming ``AWSAccessKeyId`` or ``Signature``.  A request that mixes these
    with another mechanism is still routed here so that
    :func:`authenticate_v2` can refuse it with the error S3 sends.
    """
    authorization = parts.headers.get("authorization")
    if authorization is not None and authorization.lstrip().split(" ", 1)[0] == "AWS":
        return True
    names = {name for name, _ in parts.query}
    return "AWSAccessKeyId" in names or "Signature" in names


# --------------------------------------------------------------------------
# Canonicalisation (RESTAuthentication: "Request canonicalization for signing")


def canonical_resource(
    raw_path: str,
    query: Iterable[tuple[str, str]],
    *,
    bucket: str | None,
    virtual_hosted: bool,
    empty_value_equals: bool = False,
) -> str:
    """The CanonicalizedResource: ``[/bucket]`` + the raw path + sub-resources.

    The path is signed "literally as it appears in the HTTP request, including
    URL-Encoding meta characters" (so ``%C3%A7`` and ``%c3%a7`` differ).  A
    virtual-hosted request prepends ``/bucket``, which gives the same string a
    path-style request has; a bucket-level resource always ends in ``/``.
    Sub-resource names are matched as sent; their values are signed decoded
    ("When signing, you do not encode these values").  They are sorted by name
    only, keeping the sent order of equal names, as botocore does.

    The query pairs arrive split on the first ``=`` with the ``=`` dropped, so
    ``?acl`` and ``?acl=`` look alike; an empty value is signed as the bare name
    (``?uploads``) unless *empty_value_equals* asks for ``name=``.
    """
    resource = raw_path or "/"
    if virtual_hosted and bucket:
        resource = f"/{bucket}{resource}"
    elif resource.count("/") == 1 and resource != "/":
        # A path-style bucket-level request ("/bucket") is signed as "/bucket/",
        # the resource the virtual-hosted form has; botocore's
        # ``remove_bucket_from_url_paths_from_model`` notes that S3 accepts no
        # other form, and the page's "List" example shows the trailing slash.
        resource += "/"
    subresources: list[tuple[str, str]] = []
    for name, value in query:
        if name not in SUB_RESOURCES:
            continue
        if value or empty_value_equals:
            subresources.append((name, f"{name}={_decode(value)}"))
        else:
            subresources.append((name, name))
    if not subresources:
        return resource
    subresources.sort(key=lambda item: item[0])
    return resource + "?" + "&".join(text for _, text in subresources)


def canonical_amz_headers(amz_headers: Mapping[str, str]) -> str:
    """CanonicalizedAmzHeaders: ``name:value\\n`` per x-amz-* header, sorted.

    Names are lower-cased; values are trimmed around the colon.  Repeated
    headers must already be joined with ``,`` (the HTTP layer does so), and
    inner whitespace is kept as sent, as botocore signs it.
    """
    lines = {
        name.lower(): value.strip()
        for name, value in amz_headers.items()
        if name.lower().startswith("x-amz-")
    }
    return "".join(f"{name}:{lines[name]}\n" for name in sorted(lines))


def string_to_sign(
    method: str,
    *,
    content_md5: str,
    content_type: str,
    date: str,
    amz_headers: Mapping[str, str],
    resource: str,
) -> str:
    """HTTP-Verb, Content-MD5, Content-Type, Date (or Expires), amz headers, resource."""
    return (
        f"{method.upper()}\n{content_md5.strip()}\n{content_type.strip()}\n{date}\n"
        f"{canonical_amz_headers(amz_headers)}{resource}"
    )


def sign_v2(secret_access_key: str, text: str) -> str:
    """Base64 of HMAC-SHA1 over the UTF-8 StringToSign (the SigV2 signature)."""
    digest = hmac.new(
        secret_access_key.encode("utf-8", "surrogatepass"),
        text.encode("utf-8", "surrogatepass"),
        hashlib.sha1,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def _decode(value: str) -> str:
    # Percent-decoding only: '+' stays '+', as botocore's unquote() leaves it.
    return unquote_to_bytes(value).decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Entry point


def authenticate_v2(
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    *,
    now: float,
    bucket: str | None,
    virtual_hosted: bool,
) -> AuthResult:
    """Verify a SigV2 request as S3 would, or raise the :class:`S3Error` S3 sends.

    *bucket* is the bucket named by the Host header and is only used when
    *virtual_hosted* is true (a path-style path already starts with it).  The
    body is never looked at: SigV2 does not sign the payload, so the result
    carries ``payload_hash="UNSIGNED-PAYLOAD"`` and no signing key.
    """
    authorization = parts.headers.get("authorization")
    names = {name for name, _ in parts.query}
    query_v2 = "AWSAccessKeyId" in names or "Signature" in names
    query_v4 = "X-Amz-Algorithm" in names
    if (authorization is not None and (query_v2 or query_v4)) or (query_v2 and query_v4):
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be "
            "specified",
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization or ""},
        )
    if authorization is not None:
        return _authenticate_header(authorization, parts, credentials, now, bucket, virtual_hosted)
    if query_v2:
        return _authenticate_query(parts, credentials, now, bucket, virtual_hosted)
    raise S3Error("AccessDenied")


# --------------------------------------------------------------------------
# Authorization header (RESTAuthentication: "The authentication header")


def _authenticate_header(
    authorization: str,
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    now: float,
    bucket: str | None,
    virtual_hosted: bool,
) -> AuthResult:
    access_key_id, signature = _parse_authorization(authorization)
    credential = credentials.get(access_key_id)
    if credential is None:
        raise _invalid_access_key(access_key_id)

    headers = parts.headers
    # "Time stamp requirement": x-amz-date, when present, wins over Date and
    # the Date position of the StringToSign is then empty (x-amz-date is
    # signed as an ordinary x-amz- header).  A present but empty or invalid
    # x-amz-date is refused, not replaced by Date (s3-tests auth_aws2).
    amz_date_header = headers.get("x-amz-date")
    if amz_date_header is not None:
        request_text, date_line = amz_date_header, ""
    else:
        request_text = headers.get("date", "")
        date_line = request_text.strip()
    request_time = _parse_http_date(request_text)
    if request_time is None:
        raise S3Error("AccessDenied", _NO_DATE)
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": request_text,
                "ServerTime": _iso8601(now),
                "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000),
            },
        )
    amz_headers = {name: value for name, value in headers.items() if name.startswith("x-amz-")}
    return _verify(
        parts,
        credential,
        signature,
        date_line=date_line,
        amz_headers=amz_headers,
        amz_date=_basic_iso8601(request_time),
        bucket=bucket,
        virtual_hosted=virtual_hosted,
        presigned=False,
    )


def _parse_authorization(authorization: str) -> tuple[str, str]:
    """``AWS AccessKeyId:Signature`` -> (access key id, signature)."""
    argument = {"ArgumentName": "Authorization", "ArgumentValue": authorization}
    pieces = authorization.strip().split(" ")
    if pieces[0] != "AWS":
        # Not SigV2 at all (the caller routes on is_sigv2); S3's answer to an
        # unknown scheme, as in plantcdn.sigv4.
        raise S3Error("InvalidArgument", "Unsupported Authorization Type", extra=argument)
    if len(pieces) != 2:
        raise S3Error(
            "InvalidArgument",
            "Authorization header is invalid -- one and only one ' ' (space) required",
            extra=argument,
        )
    access_key_id, colon, signature = pieces[1].partition(":")
    if not colon or not signature or ":" in signature:
        raise S3Error(
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            extra=argument,
        )
    return access_key_id, signature


def _parse_http_date(text: str) -> float | None:
    """POSIX time of an RFC 2616 date (RFC 1123, RFC 850 or asctime), or None.

    Dates before the epoch are refused as invalid (s3-tests: a 1950 date is
    AccessDenied, while a far-future 9999 date is RequestTimeTooSkewed).
    """
    text = text.strip()
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        timestamp = when.timestamp()
    except (OverflowError, ValueError):
        return None
    return timestamp if timestamp >= 0 else None


# --------------------------------------------------------------------------
# Query string authentication (RESTAuthentication: "Query string request
# authentication alternative")


def _authenticate_query(
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    now: float,
    bucket: str | None,
    virtual_hosted: bool,
) -> AuthResult:
    params: dict[str, str] = {}
    amz_headers = {
        name: value for name, value in parts.headers.items() if name.startswith("x-amz-")
    }
    query_amz: dict[str, str] = {}
    for name, value in parts.query:
        if name in _V2_QUERY_PARAMS:
            params.setdefault(name, _decode(value))
        elif name.lower().startswith("x-amz-"):
            # Signers move x-amz-* headers into a presigned URL's query
            # (botocore's HmacV1QueryAuth; x-amz-security-token per the STS
            # notes), and S3 signs them as headers.  The query copy wins.
            query_amz.setdefault(name.lower(), _decode(value))
    amz_headers.update(query_amz)

    if any(name not in params for name in _V2_QUERY_PARAMS):
        raise S3Error(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters",
        )
    expires_text = params["Expires"]
    if not _EXPIRES.fullmatch(expires_text):
        raise S3Error(
            "AccessDenied", f"Invalid date (should be seconds since epoch): {expires_text}"
        )
    access_key_id = params["AWSAccessKeyId"]
    credential = credentials.get(access_key_id)
    if credential is None:
        raise _invalid_access_key(access_key_id)
    # "A request received after this time (according to the server) will be
    # rejected."  Query auth has no clock-skew window and no maximum lifetime.
    expires = int(expires_text)
    if now > expires:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={"Expires": _iso8601(expires), "ServerTime": _iso8601(now)},
        )
    return _verify(
        parts,
        credential,
        params["Signature"],
        date_line=expires_text,
        amz_headers=amz_headers,
        amz_date=_basic_iso8601(now),
        bucket=bucket,
        virtual_hosted=virtual_hosted,
        presigned=True,
    )


# --------------------------------------------------------------------------
# Signature check


def _verify(
    parts: RequestParts,
    credential: Credential,
    signature: str,
    *,
    date_line: str,
    amz_headers: Mapping[str, str],
    amz_date: str,
    bucket: str | None,
    virtual_hosted: bool,
    presigned: bool,
) -> AuthResult:
    provided = signature.encode("utf-8", "surrogatepass")
    resources = [
        canonical_resource(
            parts.raw_path, parts.query, bucket=bucket, virtual_hosted=virtual_hosted
        )
    ]
    if any(not value and name in SUB_RESOURCES for name, value in parts.query):
        # ``?name`` and ``?name=`` cannot be told apart from the parsed pairs.
        resources.append(
            canonical_resource(
                parts.raw_path,
                parts.query,
                bucket=bucket,
                virtual_hosted=virtual_hosted,
                empty_value_equals=True,
            )
        )
    first: str | None = None
    for resource in resources:
        text = string_to_sign(
            parts.method,
            content_md5=parts.headers.get("content-md5", ""),
            content_type=parts.headers.get("content-type", ""),
            date=date_line,
            amz_headers=amz_headers,
            resource=resource,
        )
        expected = sign_v2(credential.secret_access_key, text).encode("ascii")
        if hmac.compare_digest(expected, provided):
            return AuthResult(
                access_key_id=credential.access_key_id,
                payload_hash=UNSIGNED_PAYLOAD,
                amz_date=amz_date,
                scope="",
                signing_key=b"",
                seed_signature="",
                presigned=presigned,
            )
        if first is None:
            first = text
    assert first is not None
    raise S3Error(
        "SignatureDoesNotMatch",
        extra={
            "AWSAccessKeyId": credential.access_key_id,
            "StringToSign": first,
            "SignatureProvided": signature,
            "StringToSignBytes": " ".join(
                f"{byte:02x}" for byte in first.encode("utf-8", "surrogatepass")
            ),
        },
    )


def _invalid_access_key(access_key_id: str) -> S3Error:
    return S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key_id})


def _iso8601(timestamp: float) -> str:
    """``2007-03-27T19:36:42Z``, clamped to what a datetime can hold."""
    return _clamped(timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")


def _basic_iso8601(timestamp: float) -> str:
    """``20070327T193642Z``, the form :class:`AuthResult.amz_date` carries."""
    return _clamped(timestamp).strftime("%Y%m%dT%H%M%SZ")


def _clamped(timestamp: float) -> datetime:
    low = datetime(1, 1, 1, tzinfo=UTC).timestamp()
    high = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    return datetime.fromtimestamp(min(max(timestamp, low), high), UTC)
