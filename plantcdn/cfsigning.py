"""CloudFront signed URLs and signed cookies: the verdict, without I/O.

A distribution with *Restrict viewer access* refuses every request that does
not carry a valid signature.  This module decides, for one request, whether
CloudFront would serve it, and if not, which of CloudFront's refusals it would
send.  It takes the request's parts, the trusted public keys and ``now``, and
either returns ``None`` (serve) or raises :class:`CloudFrontDenied`.  Nothing
here touches Twisted, sockets or clocks, so every rule is tested with
botocore-signed URLs and no reactor.

AWS pages followed (Amazon CloudFront Developer Guide):

* "Create a signed URL using a canned policy"
  (``private-content-creating-signed-url-canned-policy.html``)
* "Create a signed URL using a custom policy"
  (``private-content-creating-signed-url-custom-policy.html``)
* "Use signed cookies", "Set signed cookies using a canned policy", "... using a
  custom policy" (``private-content-signed-cookies.html``,
  ``private-content-setting-signed-cookie-canned-policy.html``,
  ``private-content-setting-signed-cookie-custom-policy.html``)
* "Restrict access with signed URLs and signed cookies" and "Decide to use
  signed URLs or signed cookies" (``private-content-choosing-signed-urls-cookies.html``)
* "Code examples for creating a signature for a signed URL"
  (``PrivateCFSignatureCodeAndExamples.html``: the optional SHA-256 hash)
* AWS knowledge center "How do I troubleshoot issues related to a signed URL or
  signed cookies in CloudFront?" (``cloudfront-troubleshoot-signed-url-cookies``)
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Final, NoReturn, TypeAlias
from xml.sax.saxutils import escape

from attrs import frozen
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

__all__ = [
    "CLOUDFRONT_ERRORS",
    "CONTENT_TYPE",
    "SIGNING_PARAMETERS",
    "CloudFrontDenied",
    "CloudFrontPublicKey",
    "load_public_keys",
    "strip_signing_params",
    "verify_signed_request",
]

#: A public key of a CloudFront key group.  RSA is the classic SHA1withRSA key;
#: ECDSA keys are accepted because the AWS CLI reference for ``aws cloudfront
#: sign`` / ``sign-cookies`` says it "Supports RSA and ECDSA private keys".
CloudFrontPublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: CloudFront error code -> (HTTP status, message).  Every refusal is a 403 with
#: ``Content-Type: text/xml``.  The codes and messages are the ones CloudFront
#: sends, as captured from real responses:
#:
#: * ``MissingKey`` -- AWS knowledge center (troubleshoot signed URLs/cookies):
#:   "Missing Key-Pair-Id query parameter or cookie value" when Key-Pair-Id is
#:   missing *or empty*.
#: * ``InvalidKey`` / "Unknown Key" -- same page; the code from captured bodies
#:   (github.com/commitdev/zero/issues/287).
#: * ``MalformedPolicy`` / "Malformed Policy" -- github.com/aws/aws-sdk-js/issues/2236
#:   (an ``Expires`` in milliseconds), aws-sdk-js-v3#4516 (missing
#:   ``CloudFront-Policy`` cookie), boto/boto#825 (custom policy without
#:   ``DateLessThan``).
#: * ``MalformedSignature`` / "Could not unencode Signature" -- captured bodies
#:   for a signature that is not CloudFront base64.
#: * ``AccessDenied`` / "Access denied" (lower-case *d*, unlike S3) --
#:   github.com/aws/aws-sdk-ruby/issues/1391 (with ``Content-Length: 110``, which
#:   is exactly the one-line body :meth:`CloudFrontDenied.render_xml` writes),
#:   aws-samples/amazon-cloudfront-signed-urls-using-lambda-secretsmanager#8.
CLOUDFRONT_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "MissingKey": (403, "Missing Key-Pair-Id query parameter or cookie value"),
    "InvalidKey": (403, "Unknown Key"),
    "MalformedPolicy": (403, "Malformed Policy"),
    "MalformedSignature": (403, "Could not unencode Signature"),
    "AccessDenied": (403, "Access denied"),
}

#: CloudFront's error documents are ``text/xml`` (aws-sdk-ruby#1391 headers).
CONTENT_TYPE: Final = "text/xml"

#: The query parameters CloudFront consumes and removes before it compares the
#: URL with the policy's ``Resource`` ("Create a signed URL using a canned
#: policy": the resource is the base URL "excluding the CloudFront Expires,
#: Signature, and Key-Pair-Id parameters"; the AWS CLI ``cloudfront sign`` page
#: lists ``Expires, Policy, Signature, Key-Pair-Id, Hash-Algorithm``).
SIGNING_PARAMETERS: Final = frozenset(
    {"Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm"}
)

# The presence of any of these in the query string makes the request a signed
# URL request.  "Signed URLs take precedence over signed cookies": when a viewer
# uses a signed URL, CloudFront decides "based only on the signed URL".
_URL_MARKERS: Final = ("Expires", "Policy", "Signature", "Key-Pair-Id")

# Cookie names ("Use signed cookies"); ``CloudFront-Hash-Algorithm`` is the
# optional fourth cookie of the SHA-256 update.
_COOKIE_PREFIX: Final = "CloudFront-"

# "use a 32-bit integer for a date which can be no later than 2147483647"
# ("Create a signed URL using a canned policy", Expires).  A millisecond
# timestamp is refused as MalformedPolicy (aws-sdk-js#2236).
_MAX_EPOCH: Final = 2_147_483_647

# Bounds on what we decode.  A CloudFront URL is at most 8,192 bytes and a
# cookie about 4 KiB, so anything longer cannot have come from CloudFront's
# limits; bounding it keeps base64/JSON work constant-sized.
_MAX_POLICY_CHARS: Final = 8192
_MAX_SIGNATURE_CHARS: Final = 2048

_DIGITS: Final = re.compile(r"[0-9]+")
_B64_CHARS: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")

_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "SHA1": hashes.SHA1,
    "SHA256": hashes.SHA256,
}


class CloudFrontDenied(Exception):
    """A refusal CloudFront would send for a signed URL or signed cookie.

    ``code`` selects the status and message from :data:`CLOUDFRONT_ERRORS`, so
    no caller can invent a body CloudFront never sends.  ``reason`` is ours: a
    short, secret-free word for logs and tests (``"expired"``, ``"ip"``, ...)
    that tells apart refusals CloudFront renders identically.  It never reaches
    the client.
    """

    status: int
    code: str
    message: str
    reason: str

    def __init__(self, code: str, reason: str) -> None:
        status, message = CLOUDFRONT_ERRORS[code]
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        super().__init__(f"{code}: {message} ({reason})")

    def __repr__(self) -> str:
        return f"CloudFrontDenied({self.code!r}, reason={self.reason!r})"

    def render_xml(self) -> bytes:
        """CloudFront's error document: one line, declaration, no request id.

        CloudFront (unlike S3) sends no ``RequestId``/``HostId`` elements and no
        newline; the 110-byte ``AccessDenied`` body in aws-sdk-ruby#1391 is
        exactly this rendering.
        """
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
        ).encode()


def _deny(code: str, reason: str) -> NoReturn:
    raise CloudFrontDenied(code, reason)


def load_public_keys(mapping: Mapping[str, str]) -> dict[str, CloudFrontPublicKey]:
    """Parse a key group: key-pair id (e.g. ``K2JCJMDEHXQW5F``) -> PEM public key.

    This runs once at start-up on trusted configuration, so a bad entry is a
    ``ValueError`` naming the id (never the key material), not a request
    refusal.  CloudFront stores the SubjectPublicKeyInfo PEM that
    ``openssl rsa -pubout`` prints ("Create a key pair for a trusted key group").
    """
    keys: dict[str, CloudFrontPublicKey] = {}
    for key_id, pem in mapping.items():
        if not key_id:
            raise ValueError("a CloudFront key-pair id must not be empty")
        try:
            key = serialization.load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"CloudFront public key {key_id!r} is not a PEM public key") from exc
        if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise ValueError(f"CloudFront public key {key_id!r} is neither RSA nor ECDSA")
        keys[key_id] = key
    return keys


def strip_signing_params(url: str) -> str:
    """Remove CloudFront's own parameters from *url*'s query, as CloudFront does.

    The policy's ``Resource`` is "the base URL including your query strings, if
    any, but excluding the CloudFront ``Expires``, ``Signature``, and
    ``Key-Pair-Id`` parameters"; "if you have no query string parameters, omit
    the question mark" ("Create a signed URL using a canned policy").  Your own
    parameters usually precede ours, but "in certain rare circumstances" follow
    ``Key-Pair-Id``, so they are removed wherever they are.  The query is
    treated as raw text: no decoding, no reordering, so the bytes that were
    signed are the bytes compared.
    """
    base, sep, query = url.partition("?")
    if not sep:
        return url
    kept = [part for part in query.split("&") if part.partition("=")[0] not in SIGNING_PARAMETERS]
    if not any(kept):
        return base
    return base + "?" + "&".join(kept)


def verify_signed_request(
    *,
    resource_url: str,
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    client_ip: str,
    now: float,
    public_keys: Mapping[str, CloudFrontPublicKey],
) -> None:
    """Return if CloudFront would serve this request; raise :class:`CloudFrontDenied` if not.

    *resource_url* is ``scheme://host/path?query`` as the viewer asked for it;
    CloudFront's signing parameters are stripped here (idempotently) with
    :func:`strip_signing_params`.  *query* and *cookies* hold decoded values.
    *now* is the Unix time; *client_ip* the viewer's address.

    The checks run in the order CloudFront's answers reveal: the key-pair id
    first (a URL with placeholder values answers ``InvalidKey``, not
    ``MissingKey``), then the policy, the signature's encoding, the signature,
    and last the policy's conditions.
    """
    resource = strip_signing_params(resource_url)
    fields = _credential_fields(query, cookies)

    # "Missing Key-Pair-Id query parameter or cookie value": missing or empty.
    key_pair_id = fields.get("Key-Pair-Id")
    if not key_pair_id:
        _deny("MissingKey", "missing-key-pair-id")
    public_key = public_keys.get(key_pair_id)
    if public_key is None:
        _deny("InvalidKey", "unknown-key-pair-id")

    encoded_policy = fields.get("Policy")
    if encoded_policy is not None:
        # A custom policy wins over an Expires sent alongside it (some signers,
        # e.g. @aws-sdk/cloudfront-signer, emit both).
        signed_bytes = _decode_or_deny(
            encoded_policy, _MAX_POLICY_CHARS, "MalformedPolicy", "policy-encoding"
        )
        policy = _parse_custom_policy(signed_bytes)
    else:
        expires_text = fields.get("Expires")
        if expires_text is None:
            _deny("MalformedPolicy", "missing-policy")
        expires = _parse_expires(expires_text)
        policy = _Policy(resource=None, date_less_than=expires, date_greater_than=None, source=None)
        signed_bytes = _canned_policy(resource, expires).encode("utf-8")

    encoded_signature = fields.get("Signature")
    if not encoded_signature:
        _deny("AccessDenied", "missing-signature")
    signature = _decode_or_deny(
        encoded_signature, _MAX_SIGNATURE_CHARS, "MalformedSignature", "signature-encoding"
    )

    hash_name = fields.get("Hash-Algorithm", "SHA1")
    hash_type = _HASHES.get(hash_name)
    if hash_type is None:
        _deny("AccessDenied", "hash-algorithm")
    if not _signature_valid(public_key, signature, signed_bytes, hash_type()):
        _deny("AccessDenied", "bad-signature")

    _check_conditions(policy, resource=resource, client_ip=client_ip, now=now)


# --- credential selection -------------------------------------------------


def _credential_fields(query: Mapping[str, str], cookies: Mapping[str, str]) -> dict[str, str]:
    """The signing fields of the one credential CloudFront looks at.

    "Signed URLs take precedence over signed cookies. If you use both ... and a
    viewer uses a signed URL to request a file, CloudFront determines whether to
    return the file to the viewer based only on the signed URL" ("Decide to use
    signed URLs or signed cookies").  Cookies carry the same fields under a
    ``CloudFront-`` prefix ("Use signed cookies").
    """
    names = ("Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm")
    if any(name in query for name in _URL_MARKERS):
        return {name: query[name] for name in names if name in query}
    return {
        name: cookies[_COOKIE_PREFIX + name] for name in names if _COOKIE_PREFIX + name in cookies
    }


# --- decoding ---------------------------------------------------------------


def _decode_or_deny(text: str, limit: int, code: str, reason: str) -> bytes:
    """Decode CloudFront's URL-safe base64 or refuse with *code*.

    CloudFront replaces ``+`` with ``-``, ``=`` with ``_`` and ``/`` with ``~``
    ("Create a signed URL using a custom policy", the table of invalid and valid
    characters).  The standard characters are accepted too (they survive the
    mapping unchanged), padding may be omitted as MIME decoders allow, but any
    other character is a refusal rather than silently skipped.
    """
    if len(text) > limit:
        _deny(code, reason)
    standard = text.translate(_FROM_CLOUDFRONT_B64)
    if not _B64_CHARS.fullmatch(standard):
        _deny(code, reason)
    unpadded = standard.rstrip("=")
    if len(unpadded) % 4 == 1:
        _deny(code, reason)
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        _deny(code, reason)


_FROM_CLOUDFRONT_B64: Final = str.maketrans({"-": "+", "_": "=", "~": "/"})


# --- policies ---------------------------------------------------------------


@frozen
class _Policy:
    """The conditions of a policy statement, already checked for shape.

    ``resource`` is ``None`` when the statement omits it ("If you omit the
    Resource parameter ..., users can access all of the objects" -- custom
    policy page), and always for a canned policy, whose resource is bound by the
    signature itself.  ``source`` is the CIDR of ``IpAddress``, if any.
    """

    resource: str | None
    date_less_than: int
    date_greater_than: int | None
    source: ipaddress.IPv4Network | ipaddress.IPv6Network | None


def _canned_policy(resource: str, expires: int) -> str:
    """The canned policy CloudFront rebuilds, byte for byte.

    "Construct the policy statement using the following JSON format ... Include
    all punctuation and other literal values exactly as specified" and "Remove
    all whitespace" ("Create a signed URL using a canned policy").  The resource
    is inserted as-is, as the page's concatenation (and botocore's output for an
    ASCII URL) does.
    """
    return (
        '{"Statement":[{"Resource":"'
        + resource
        + '","Condition":{"DateLessThan":{"AWS:EpochTime":'
        + str(expires)
        + "}}}]}"
    )


def _parse_expires(text: str) -> int:
    """The canned ``Expires``: decimal Unix seconds within 32 bits, else MalformedPolicy."""
    if len(text) > 10 or not _DIGITS.fullmatch(text):
        _deny("MalformedPolicy", "expires")
    value = int(text)
    if value > _MAX_EPOCH:
        _deny("MalformedPolicy", "expires")
    return value


class _Malformed(Exception):
    """Internal: the policy JSON does not have the documented shape."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            # Two ``DateLessThan`` keys would let a reader and a checker
            # disagree; fail closed.
            raise _Malformed(key)
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    raise _Malformed(name)  # NaN, Infinity: not JSON numbers.


def _parse_custom_policy(raw: bytes) -> _Policy:
    """Check a decoded custom policy's shape; any deviation is MalformedPolicy.

    The statement format is fixed by "Create a signed URL using a custom
    policy": one ``Statement`` holding exactly one object ("You can include only
    one statement"), an optional ``Resource`` string, a ``Condition`` whose
    ``DateLessThan`` "is the only required parameter", optional
    ``DateGreaterThan`` and ``IpAddress``.  "Include all punctuation and
    parameter names exactly as specified. Abbreviations for parameter names are
    not accepted": unknown names are refused rather than ignored, so a condition
    CloudFront would enforce is never silently dropped here.  Whitespace is
    allowed: AWS's own example policies contain it.
    """
    try:
        document = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
        return _policy_from_document(document)
    except (_Malformed, ValueError, RecursionError):
        # ValueError covers UnicodeDecodeError, JSONDecodeError, oversized ints
        # and bad CIDRs.
        _deny("MalformedPolicy", "policy-document")


def _policy_from_document(document: object) -> _Policy:
    statement = _only_statement(document)
    if not set(statement) <= {"Resource", "Condition"}:
        raise _Malformed("statement keys")
    resource = statement.get("Resource")
    if resource is not None and not isinstance(resource, str):
        raise _Malformed("Resource")
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        raise _Malformed("Condition")
    if not set(condition) <= {"DateLessThan", "DateGreaterThan", "IpAddress"}:
        raise _Malformed("condition keys")
    if "DateLessThan" not in condition:
        raise _Malformed("DateLessThan")
    date_less_than = _epoch(condition["DateLessThan"])
    date_greater_than = (
        _epoch(condition["DateGreaterThan"]) if "DateGreaterThan" in condition else None
    )
    source = _source_ip(condition["IpAddress"]) if "IpAddress" in condition else None
    return _Policy(
        resource=resource,
        date_less_than=date_less_than,
        date_greater_than=date_greater_than,
        source=source,
    )


def _only_statement(document: object) -> dict[str, object]:
    if not isinstance(document, dict) or set(document) != {"Statement"}:
        raise _Malformed("document")
    statements = document["Statement"]
    if not isinstance(statements, list) or len(statements) != 1:
        raise _Malformed("Statement")
    statement = statements[0]
    if not isinstance(statement, dict):
        raise _Malformed("Statement")
    return statement


def _epoch(value: object) -> int:
    """``{"AWS:EpochTime": <int>}``: "Do not enclose the value in quotation marks"."""
    if not isinstance(value, dict) or set(value) != {"AWS:EpochTime"}:
        raise _Malformed("AWS:EpochTime")
    seconds = value["AWS:EpochTime"]
    if type(seconds) is not int or not 0 <= seconds <= _MAX_EPOCH:
        raise _Malformed("AWS:EpochTime")
    return seconds


def _source_ip(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``{"AWS:SourceIp": "<CIDR>"}``.

    The page asks for CIDR (``192.0.2.0/24``, ``/32`` for one address); AWS's
    own SDK examples set host bits (``192.168.0.1/24``), so those are accepted
    and masked.  A bare address means that one address (botocore appends
    ``/32``).  IPv6 ranges are accepted too.  Note: the older guide said "IP
    addresses in IPv6 format ... are not supported" and told users not to enable
    IPv6 on such distributions; accepting them here is a deliberate superset.
    """
    if not isinstance(value, dict) or set(value) != {"AWS:SourceIp"}:
        raise _Malformed("AWS:SourceIp")
    cidr = value["AWS:SourceIp"]
    if not isinstance(cidr, str):
        raise _Malformed("AWS:SourceIp")
    return ipaddress.ip_network(cidr.strip(), strict=False)


# --- signature --------------------------------------------------------------


def _signature_valid(
    public_key: CloudFrontPublicKey,
    signature: bytes,
    message: bytes,
    hash_algorithm: hashes.HashAlgorithm,
) -> bool:
    """RSA PKCS#1 v1.5 (or ECDSA) over the policy bytes with the requested hash.

    "Use the SHA-1 hash function and RSA to hash and sign the policy statement"
    (canned/custom policy pages); SHA-256 with ``Hash-Algorithm=SHA256`` ("Code
    examples for creating a signature for a signed URL").
    """
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hash_algorithm)
        else:
            public_key.verify(signature, message, ec.ECDSA(hash_algorithm))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- conditions -------------------------------------------------------------


def _check_conditions(policy: _Policy, *, resource: str, client_ip: str, now: float) -> None:
    """Apply the policy to this request; each failure is CloudFront's AccessDenied."""
    if policy.resource is not None and not _wildcard_match(policy.resource, resource):
        _deny("AccessDenied", "resource")
    # DateLessThan: the request must come strictly before it ("the date and time
    # that you want the URL to stop allowing access").
    if not now < policy.date_less_than:
        _deny("AccessDenied", "expired")
    # DateGreaterThan: "Users are not allowed to access the object before the
    # specified date and time."
    if policy.date_greater_than is not None and now < policy.date_greater_than:
        _deny("AccessDenied", "not-yet-valid")
    if policy.source is not None and not _ip_in(client_ip, policy.source):
        _deny("AccessDenied", "ip")


def _ip_in(client_ip: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether *client_ip* lies in *network*; an unparseable address never does.

    A dual-stack listener reports IPv4 viewers as ``::ffff:a.b.c.d``; CloudFront
    sees them as IPv4, so they are unwrapped first.
    """
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version == network.version and address in network


def _wildcard_match(pattern: str, text: str) -> bool:
    """CloudFront's ``Resource`` wildcards, over the whole URL.

    "You can use the wildcard character that matches zero or more characters
    (*) or the wild-card character that matches exactly one character (?)
    anywhere in the string" (custom policy page).  Both may cross ``/`` and
    ``?``: ``http://d111111abcdef8.cloudfront.net/*game_download.zip*`` matches
    ``.../example_game_download.zip?license=yes``.

    The classic greedy matcher with one backtrack point runs in
    O(len(pattern) * len(text)) whatever the pattern, so a hostile policy of
    many ``*`` cannot stall the server the way a regex could.
    """
    p = t = 0
    star_p = -1
    star_t = 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p = p
            star_t = t
            p += 1
        elif star_p >= 0:
            p = star_p + 1
            star_t += 1
            t = star_t
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
