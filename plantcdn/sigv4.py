"""Pure AWS Signature Version 4 verification for S3 requests.

No I/O and no Twisted: the HTTP layer hands over the request parts, the known
credentials and the current time, and gets back an :class:`AuthResult` or an
:class:`~plantcdn.errors.S3Error` carrying the code and message S3 sends.

AWS pages followed (Amazon S3 API Reference):

* "Authenticating Requests: Using the Authorization Header (AWS Signature
  Version 4)" and "Signature Calculations for the Authorization Header:
  Transferring Payload in a Single Chunk" (``sig-v4-header-based-auth``);
* "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)"
  (``sigv4-query-string-auth``);
* "Create a canonical request for Signature Version 4" (IAM user guide) for
  the UriEncode rules; S3 is the one service whose path is not normalised.

Error wording follows what S3 itself answers (as quoted in client issue
trackers) where the docs do not give it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from attrs import field, frozen

from plantcdn.credentials import Credential
from plantcdn.errors import S3Error

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_EXPIRES",
    "MAX_SKEW_SECONDS",
    "STREAMING_MODES",
    "UNSIGNED_PAYLOAD",
    "AuthResult",
    "RequestParts",
    "authenticate",
    "canonical_query_string",
    "canonical_uri",
    "derive_signing_key",
    "sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: The ``x-amz-content-sha256`` values announcing an aws-chunked body.  The
#: ECDSA (SigV4a) modes are accepted by S3 as values but are not supported here.
STREAMING_MODES = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    }
)
_ECDSA_MODES = frozenset(
    {
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)
#: Header-signed requests may be this far from the server clock (S3: 15 min).
MAX_SKEW_SECONDS = 15 * 60
#: A presigned URL lives at most a week (sigv4-query-string-auth).
MAX_EXPIRES = 7 * 24 * 3600

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z\Z", re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}\Z")
_CREDENTIAL_FORMAT = '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'
_HEADER_PREFIX = "The authorization header is malformed; "
_QUERY_CREDENTIAL_PREFIX = "Error parsing the X-Amz-Credential parameter; "
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


@frozen
class RequestParts:
    """What SigV4 needs from an HTTP request, exactly as it came off the wire."""

    method: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]


@frozen
class AuthResult:
    """A verified request: who signed it and what the body must still prove.

    ``signing_key`` and ``seed_signature`` let the aws-chunked decoder verify
    chunk signatures chained from the request signature.
    """

    access_key_id: str
    payload_hash: str
    amz_date: str
    scope: str
    signing_key: bytes = field(repr=False)
    seed_signature: str = field(repr=False)
    presigned: bool


@frozen
class _Scope:
    access_key_id: str
    date: str
    region: str
    service: str

    @property
    def text(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


# --------------------------------------------------------------------------
# Primitives


@lru_cache(maxsize=256)
def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over date, region, service, "aws4_request".

    Cached: every request of a day from one key derives the same value, and
    four HMACs per request are the largest fixed cost of verification.
    """
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def sign(signing_key: bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of *string_to_sign*: the signature SigV4 compares."""
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _uri_encode(raw: bytes, *, keep_slash: bool) -> str:
    # UriEncode: everything but A-Z a-z 0-9 - _ . ~ is %XX (upper-case hex).
    return quote(raw, safe="/" if keep_slash else "")


def canonical_uri(raw_path: str) -> str:
    """The canonical URI S3 signs: the decoded path re-encoded, never normalised.

    S3 keeps ``.``/``..`` segments and repeated slashes (they are part of the
    key), unlike other services.
    """
    if not raw_path:
        return "/"
    return _uri_encode(unquote_to_bytes(raw_path), keep_slash=True)


def canonical_query_string(
    query: tuple[tuple[str, str], ...], *, exclude_signature: bool = False
) -> str:
    """Decode then re-encode each name and value, sorted by name then value."""
    pairs = []
    for name, value in query:
        if exclude_signature and name == "X-Amz-Signature":
            continue
        pairs.append(
            (
                _uri_encode(unquote_to_bytes(name), keep_slash=False),
                _uri_encode(unquote_to_bytes(value), keep_slash=False),
            )
        )
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _raw_query_string(query: tuple[tuple[str, str], ...], *, exclude_signature: bool) -> str:
    # What signers that copy the query verbatim (botocore for S3) produce.
    pairs = sorted(
        (name, value)
        for name, value in query
        if not (exclude_signature and name == "X-Amz-Signature")
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def _trim_all(value: str) -> str:
    # Trimall: strip, and collapse inner runs of whitespace to one space (as
    # botocore and the AWS SDKs sign it).
    return " ".join(value.split())


def _canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    return "".join(f"{name}:{_trim_all(headers.get(name, ''))}\n" for name in signed)


def _iso8601(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_amz_date(value: str) -> float | None:
    if not _AMZ_DATE.match(value) or len(value) != 16:
        return None
    try:
        # datetime() validates the fields like strptime does, at a fraction of its cost
        # (this runs for every signed request).
        parsed = datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None
    return parsed.timestamp()


def _spaced_hex(text: str) -> str:
    # S3's StringToSignBytes / CanonicalRequestBytes: "41 57 53 ..." in hex.
    return " ".join(f"{byte:02x}" for byte in text.encode("utf-8"))


# --------------------------------------------------------------------------
# Entry point


def authenticate(
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    *,
    now: float,
    region: str,
    service: str = "s3",
) -> AuthResult:
    """Verify *parts* as S3 would, or raise the :class:`S3Error` S3 would send.

    The body is not looked at: when ``payload_hash`` is a hex digest the caller
    must check it against the body (``XAmzContentSHA256Mismatch``); when it is a
    streaming mode the caller decodes the body with
    :class:`plantcdn.awschunked.AwsChunkedDecoder`.
    """
    authorization = parts.headers.get("authorization")
    query_names = {name for name, _ in parts.query}
    query_v4 = "X-Amz-Algorithm" in query_names
    query_v2 = "Signature" in query_names or "AWSAccessKeyId" in query_names
    if authorization is not None and (query_v4 or query_v2):
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be "
            "specified",
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
        )
    if authorization is not None:
        return _authenticate_header(authorization, parts, credentials, now, region, service)
    if query_v4:
        return _authenticate_query(parts, credentials, now, region, service)
    if query_v2:
        raise _unsupported_mechanism()
    raise S3Error("AccessDenied")


def _unsupported_mechanism() -> S3Error:
    return S3Error(
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256.",
    )


# --------------------------------------------------------------------------
# Authorization header


def _authenticate_header(
    authorization: str,
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    now: float,
    region: str,
    service: str,
) -> AuthResult:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == "AWS":
        raise _unsupported_mechanism()
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            "Unsupported Authorization Type",
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
        )
    components = _parse_components(rest)
    scope = _parse_credential(components["Credential"], region, service, _HEADER_PREFIX)
    signed_headers_text = components["SignedHeaders"]
    signature = components["Signature"]

    credential = credentials.get(scope.access_key_id)
    if credential is None:
        raise _invalid_access_key(scope.access_key_id)

    headers = parts.headers
    amz_date, request_time_text, request_time = _header_request_time(headers)
    if scope.date != amz_date[:8]:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f'{_HEADER_PREFIX}Invalid credential date "{scope.date}". '
            f'This date is not the same as X-Amz-Date: "{amz_date[:8]}".',
        )
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": request_time_text,
                "ServerTime": _iso8601(now),
                "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000),
            },
        )

    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise S3Error(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"
        )
    _check_payload_hash(payload_hash)

    signed = _signed_header_list(signed_headers_text, headers)
    return _verify(
        parts,
        credential,
        scope,
        amz_date=amz_date,
        signed=signed,
        signed_headers_text=signed_headers_text,
        payload_hash=payload_hash,
        signature=signature,
        presigned=False,
    )


def _parse_components(rest: str) -> dict[str, str]:
    components: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq or name in components:
            raise S3Error(
                "AuthorizationHeaderMalformed",
                f'{_HEADER_PREFIX}the authorization component "{item}" is malformed.',
            )
        components[name] = value
    if not {"Credential", "SignedHeaders", "Signature"} <= components.keys():
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"{_HEADER_PREFIX}the authorization header requires three components: "
            "Credential, SignedHeaders, and Signature.",
        )
    return components


def _parse_credential(text: str, region: str, service: str, prefix: str) -> _Scope:
    code = (
        "AuthorizationHeaderMalformed"
        if prefix is _HEADER_PREFIX
        else "AuthorizationQueryParametersError"
    )
    fields = text.split("/")
    if len(fields) != 5 or not fields[0] or not re.fullmatch(r"\d{8}", fields[1], re.ASCII):
        raise S3Error(
            code, f"{prefix}the Credential is mal-formed; expecting {_CREDENTIAL_FORMAT}."
        )
    access_key_id, date, got_region, got_service, terminator = fields
    if not got_region:
        raise S3Error(code, f"{prefix}a non-empty region must be provided in the credential.")
    if got_region != region:
        raise S3Error(
            code,
            f"{prefix}the region '{got_region}' is wrong; expecting '{region}'",
            extra={"Region": region},
        )
    if got_service != service:
        raise S3Error(
            code,
            f'{prefix}incorrect service "{got_service}". This endpoint belongs to "{service}".',
        )
    if terminator != TERMINATOR:
        raise S3Error(
            code,
            f'{prefix}incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".',
        )
    return _Scope(access_key_id, date, got_region, got_service)


def _header_request_time(headers: Mapping[str, str]) -> tuple[str, str, float]:
    """(ISO 8601 basic timestamp, the header text as sent, POSIX time)."""
    missing = S3Error(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
    )
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        parsed = _parse_amz_date(amz_date.strip())
        if parsed is None:
            raise missing
        return amz_date.strip(), amz_date, parsed
    date = headers.get("date")
    if date is None:
        raise missing
    try:
        when = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise missing from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"), date, when.timestamp()


def _check_payload_hash(value: str) -> None:
    if value == UNSIGNED_PAYLOAD or value in STREAMING_MODES or _SHA256_HEX.match(value):
        return
    if value in _ECDSA_MODES:
        raise S3Error(
            "NotImplemented",
            "A header you provided implies functionality that is not implemented.",
            extra={"Header": "x-amz-content-sha256"},
        )
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


def _signed_header_list(text: str, headers: Mapping[str, str]) -> list[str]:
    """The SignedHeaders names; refuse requests whose x-amz-* or Host went unsigned."""
    signed = [name.strip().lower() for name in text.split(";")]
    signed_set = set(signed)
    not_signed = sorted(
        name
        for name in headers
        if (name == "host" or name.startswith("x-amz-")) and name not in signed_set
    )
    if not_signed:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(not_signed)},
        )
    return signed


def _invalid_access_key(access_key_id: str) -> S3Error:
    return S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key_id})


# --------------------------------------------------------------------------
# Presigned URLs (query-string auth)


def _authenticate_query(
    parts: RequestParts,
    credentials: Mapping[str, Credential],
    now: float,
    region: str,
    service: str,
) -> AuthResult:
    params: dict[str, str] = {}
    for name, value in parts.query:
        if name in _PRESIGN_PARAMS or name.lower() == "x-amz-content-sha256":
            params.setdefault(name, unquote_to_bytes(value).decode("utf-8", "replace"))

    def error(message: str, **extra: str) -> S3Error:
        return S3Error("AuthorizationQueryParametersError", message, extra=extra or None)

    if params.get("X-Amz-Algorithm", ALGORITHM) not in (ALGORITHM, ""):
        raise error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    if any(not params.get(name) for name in _PRESIGN_PARAMS):
        raise error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = params["X-Amz-Expires"]
    try:
        expires = int(expires_text, 10)
    except ValueError:
        raise error("X-Amz-Expires should be a number") from None
    if expires < 0:
        raise error("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES:
        raise error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            f"X-Amz-Expires must be less than {MAX_EXPIRES} seconds"
        )
    scope = _parse_credential(params["X-Amz-Credential"], region, service, _QUERY_CREDENTIAL_PREFIX)
    if scope.date != amz_date[:8]:
        raise error(
            f'{_QUERY_CREDENTIAL_PREFIX}Invalid credential date "{scope.date}". '
            f'This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )
    credential = credentials.get(scope.access_key_id)
    if credential is None:
        raise _invalid_access_key(scope.access_key_id)

    expiry = request_time + expires
    if request_time - now > MAX_SKEW_SECONDS:
        raise S3Error(
            "AccessDenied",
            "Request is not yet valid",
            extra={
                "X-Amz-Date": str(int(request_time * 1000)),
                "Expires": _iso8601(expiry),
                "ServerTime": _iso8601(now),
            },
        )
    if now > expiry:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": expires_text,
                "Expires": _iso8601(expiry),
                "ServerTime": _iso8601(now),
            },
        )

    payload_hash = next(
        (value for name, value in params.items() if name.lower() == "x-amz-content-sha256"),
        None,
    )
    if payload_hash is None:
        payload_hash = parts.headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD)
    _check_payload_hash(payload_hash)

    signed_headers_text = params["X-Amz-SignedHeaders"]
    signed = _signed_header_list(signed_headers_text, parts.headers)
    return _verify(
        parts,
        credential,
        scope,
        amz_date=amz_date,
        signed=signed,
        signed_headers_text=signed_headers_text,
        payload_hash=payload_hash,
        signature=params["X-Amz-Signature"],
        presigned=True,
    )


# --------------------------------------------------------------------------
# Signature check


def _verify(
    parts: RequestParts,
    credential: Credential,
    scope: _Scope,
    *,
    amz_date: str,
    signed: list[str],
    signed_headers_text: str,
    payload_hash: str,
    signature: str,
    presigned: bool,
) -> AuthResult:
    key = derive_signing_key(credential.secret_access_key, scope.date, scope.region, scope.service)
    scope_text = scope.text
    tail = "\n".join([_canonical_headers(parts.headers, signed), signed_headers_text, payload_hash])
    method = parts.method.upper()
    candidates = [
        (
            canonical_uri(parts.raw_path),
            canonical_query_string(parts.query, exclude_signature=presigned),
        ),
        (parts.raw_path or "/", _raw_query_string(parts.query, exclude_signature=presigned)),
    ]
    first: tuple[str, str] | None = None
    seen: set[tuple[str, str]] = set()
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.add(candidate)
        canonical_request = "\n".join([method, candidate[0], candidate[1], tail])
        string_to_sign = "\n".join(
            [
                ALGORITHM,
                amz_date,
                scope_text,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            ]
        )
        expected = sign(key, string_to_sign)
        if hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            return AuthResult(
                access_key_id=scope.access_key_id,
                payload_hash=payload_hash,
                amz_date=amz_date,
                scope=scope_text,
                signing_key=key,
                seed_signature=expected,
                presigned=presigned,
            )
        if first is None:
            first = (canonical_request, string_to_sign)
    assert first is not None
    canonical_request, string_to_sign = first
    raise S3Error(
        "SignatureDoesNotMatch",
        extra={
            "AWSAccessKeyId": scope.access_key_id,
            "StringToSign": string_to_sign,
            "SignatureProvided": signature,
            "StringToSignBytes": _spaced_hex(string_to_sign),
            "CanonicalRequest": canonical_request,
            "CanonicalRequestBytes": _spaced_hex(canonical_request),
        },
    )
