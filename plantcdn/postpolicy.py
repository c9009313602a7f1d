"""Browser-based POST uploads: who signed the form, and does the form meet its policy.

Pure: no Twisted, no I/O.  The route reads the form fields that precede the file
(``plantcdn.formdata``), then calls, in this order:

1. :func:`verify_post_signature` -- the ``key`` field is present and the policy
   string was signed by a known key (SigV4 or legacy SigV2);
2. :func:`decode_policy` -- the base64 JSON policy is well formed;
3. :func:`evaluate_policy` -- not expired, every field covered, every condition
   met; returns the ``content-length-range`` bounds the writer enforces while
   it streams the file (:meth:`PolicyVerdict.check_size`).

AWS pages followed (Amazon S3 API Reference unless noted):

* "Authenticating Requests in Browser-Based Uploads Using POST (AWS Signature
  Version 4)" (``sigv4-UsingHTTPPOST.html``) and "Calculating a Signature"
  (``sigv4-post-example.html``, whose published vector is in the tests);
* "Creating a POST Policy" (``sigv4-HTTPPOSTConstructPolicy.html``);
* "POST Object" (``RESTObjectPOST.html``);
* S3 User Guide, "HTML Forms (AWS Signature Version 2)" (``HTTPPOSTForms.html``)
  for the legacy ``AWSAccessKeyId``/``signature`` form that botocore still
  produces by default for ``generate_presigned_post``.

Wording of the refusals S3 sends but does not document (``Invalid Policy: ...``,
``Bucket POST must contain a field named ...``) follows what S3-compatible
servers that test against AWS record (LocalStack's snapshot-tested validator,
Versity's gateway); each constant below says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.sigv4 import derive_signing_key, sign

__all__ = [
    "EXEMPT_FIELDS",
    "Condition",
    "Policy",
    "PolicyVerdict",
    "PostAuth",
    "decode_policy",
    "evaluate_policy",
    "missing_field",
    "substitute_filename",
    "verify_post_signature",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SERVICE = "s3"

#: Form fields no policy condition needs to name.  SigV4 page: "except
#: x-amz-signature, file, policy, and field names that have an x-ignore-
#: prefix"; SigV2 page adds AWSAccessKeyId and signature.  (``x-amz-algorithm``,
#: ``x-amz-credential`` and ``x-amz-date`` are *not* exempt: botocore and the
#: AWS example put them in the policy.)
EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
_IGNORED_PREFIX = "x-ignore-"

# The SigV4 and SigV2 authentication fields, lower-cased, with the spelling S3
# uses when it says one is missing (LocalStack's snapshot-tested validator:
# "X-Amz-Signature", "AWSAccessKeyId", "Signature").
_V4_FIELDS = (
    ("policy", "Policy"),
    ("x-amz-algorithm", "X-Amz-Algorithm"),
    ("x-amz-credential", "X-Amz-Credential"),
    ("x-amz-date", "X-Amz-Date"),
    ("x-amz-signature", "X-Amz-Signature"),
)
_V2_FIELDS = (
    ("awsaccesskeyid", "AWSAccessKeyId"),
    ("signature", "Signature"),
    ("policy", "Policy"),
)

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_SCOPE_DATE = re.compile(r"\d{8}", re.ASCII)
_CREDENTIAL_FORMAT = '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'
# "ISO8601 GMT date format", e.g. 2013-08-01T12:00:00.000Z; botocore writes it
# without the fraction.  A bare local time is refused by S3 ("Invalid 'expiration'
# value: '2016-04-28T23:31:36.798044'"), so only the Z form is accepted.
_EXPIRATION = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII
)


# --------------------------------------------------------------------------
# Results


@frozen
class PostAuth:
    """Who signed the form: the access key and ``"v4"`` or ``"v2"``."""

    access_key_id: str
    signature_version: str


@frozen
class Condition:
    """One policy condition, already checked for shape.

    ``op`` is ``"eq"``, ``"starts-with"`` or ``"content-length-range"``.  ``field``
    is the lower-cased form field name (``None`` for a range, or for an
    ``eq``/``starts-with`` whose field does not begin with ``$`` -- S3 accepts the
    document and then fails that condition).  ``text`` is the condition as S3
    quotes it in "Policy Condition failed: ..." messages.
    """

    op: str
    field: str | None
    value: str
    minimum: int
    maximum: int
    text: str


@frozen
class Policy:
    """A decoded POST policy: when it stops being valid and what it demands."""

    expiration: datetime
    conditions: tuple[Condition, ...]


@frozen
class PolicyVerdict:
    """What remains to be enforced while the file streams: its size bounds."""

    min_length: int | None
    max_length: int | None

    def check_size(self, size: int, *, complete: bool) -> None:
        """Raise S3's error if *size* bytes break the ``content-length-range``.

        Call with ``complete=False`` as bytes arrive (only the maximum can be
        broken early) and once more with ``complete=True`` at the end of the file.
        Extra elements follow S3's ``EntityTooLarge``/``EntityTooSmall`` bodies.
        """
        if self.max_length is not None and size > self.max_length:
            raise S3Error(
                "EntityTooLarge",
                extra={"ProposedSize": str(size), "MaxSizeAllowed": str(self.max_length)},
            )
        if complete and self.min_length is not None and size < self.min_length:
            raise S3Error(
                "EntityTooSmall",
                extra={"ProposedSize": str(size), "MinSizeAllowed": str(self.min_length)},
            )


# --------------------------------------------------------------------------
# Signature


def missing_field(name: str) -> S3Error:
    """S3's refusal of a form that lacks a required field (*name* as S3 spells it).

    The two spaces before "If" are S3's.
    """
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  "
        "If it is specified, please check the order of the fields.",
        extra={"ArgumentName": name, "ArgumentValue": ""},
    )


def verify_post_signature(
    fields: Mapping[str, str],
    credentials: Mapping[str, Credential],
    *,
    now: float,
    region: str,
) -> PostAuth:
    """Check that the form's ``policy`` was signed by one of *credentials*.

    *fields* are the form fields before the file, names lower-cased.  An empty
    field counts as absent, as in S3.  *now* is accepted for symmetry with the
    header verifier; S3 applies no clock-skew window to POST forms -- the
    policy's ``expiration`` (checked by :func:`evaluate_policy`) bounds them.

    A form that carries none of the signing fields is anonymous; plantcdn has
    no publicly writable buckets, so it gets what S3 sends for an anonymous
    write to a private bucket: 403 AccessDenied.  A ``policy`` alone is
    likewise anonymous (LocalStack's validator, recorded against S3).
    """
    del now  # see docstring
    if not fields.get("key"):
        # POST Object: "key ... Required: Yes".
        raise missing_field("key")
    if any(fields.get(name) for name, _ in _V4_FIELDS[1:]):
        return _verify_v4(fields, credentials, region)
    if any(fields.get(name) for name, _ in _V2_FIELDS[:2]):
        return _verify_v2(fields, credentials)
    raise S3Error("AccessDenied")


def _require(fields: Mapping[str, str], names: tuple[tuple[str, str], ...]) -> None:
    for name, spelling in names:
        if not fields.get(name):
            raise missing_field(spelling)


def _verify_v4(
    fields: Mapping[str, str], credentials: Mapping[str, Credential], region: str
) -> PostAuth:
    # sigv4-UsingHTTPPOST: signature = Hex(HMAC-SHA256(SigningKey, base64 policy)).
    _require(fields, _V4_FIELDS)
    algorithm = fields["x-amz-algorithm"]
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            f'X-Amz-Algorithm only supports "{ALGORITHM}"',
            extra={"ArgumentName": "X-Amz-Algorithm", "ArgumentValue": algorithm},
        )
    if not _AMZ_DATE.fullmatch(fields["x-amz-date"]):
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    access_key_id, date = _parse_credential(fields["x-amz-credential"], region)
    credential = credentials.get(access_key_id)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key_id})
    policy = fields["policy"]
    provided = fields["x-amz-signature"]
    expected = sign(derive_signing_key(credential.secret_access_key, date, region, SERVICE), policy)
    if not hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8")):
        raise _signature_mismatch(access_key_id, policy, provided)
    return PostAuth(access_key_id=access_key_id, signature_version="v4")


def _parse_credential(text: str, region: str) -> tuple[str, str]:
    """(access key id, scope date) from ``<AKID>/YYYYMMDD/REGION/s3/aws4_request``.

    Messages are S3's credential-scope messages; a wrong region is reported as
    S3 reports it for every SigV4 request, as ``AuthorizationHeaderMalformed``
    naming the expected region.
    """
    parts = text.split("/")

    def invalid(message: str) -> S3Error:
        return S3Error(
            "InvalidArgument",
            message,
            extra={"ArgumentName": "X-Amz-Credential", "ArgumentValue": text},
        )

    if len(parts) != 5 or not parts[0]:
        raise invalid(f"the Credential is mal-formed; expecting {_CREDENTIAL_FORMAT}.")
    access_key_id, date, got_region, service, terminator = parts
    if not _SCOPE_DATE.fullmatch(date):
        raise invalid(
            f'incorrect date format "{date}". This date in the credential must be in the '
            'format "yyyyMMdd".'
        )
    if got_region != region:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; the region '{got_region}' is wrong; "
            f"expecting '{region}'",
            extra={"Region": region},
        )
    if service != SERVICE:
        raise invalid(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminator != TERMINATOR:
        raise invalid(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    return access_key_id, date


def _verify_v2(fields: Mapping[str, str], credentials: Mapping[str, Credential]) -> PostAuth:
    # HTTPPOSTForms.html, "Constructing a Signature": Base64(HMAC-SHA1(secret, policy)).
    _require(fields, _V2_FIELDS)
    access_key_id = fields["awsaccesskeyid"]
    credential = credentials.get(access_key_id)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key_id})
    policy = fields["policy"]
    provided = fields["signature"]
    digest = hmac.new(
        credential.secret_access_key.encode("utf-8"), policy.encode("utf-8"), hashlib.sha1
    ).digest()
    expected = base64.b64encode(digest)
    if not hmac.compare_digest(expected, provided.encode("utf-8")):
        raise _signature_mismatch(access_key_id, policy, provided)
    return PostAuth(access_key_id=access_key_id, signature_version="v2")


def _signature_mismatch(access_key_id: str, string_to_sign: str, provided: str) -> S3Error:
    # For a POST the string to sign is the base64 policy itself.
    return S3Error(
        "SignatureDoesNotMatch",
        extra={
            "AWSAccessKeyId": access_key_id,
            "StringToSign": string_to_sign,
            "SignatureProvided": provided,
            "StringToSignBytes": " ".join(f"{b:02x}" for b in string_to_sign.encode("utf-8")),
        },
    )


# --------------------------------------------------------------------------
# Policy document


def _invalid_policy(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}")


_INVALID_JSON = "Invalid JSON."


def _reject_constant(name: str) -> Any:
    # json accepts NaN/Infinity; S3's parser does not.
    raise ValueError(name)


def decode_policy(policy_b64: str) -> Policy:
    """Decode and shape-check the base64 JSON policy, as S3 does before evaluating it.

    Every refusal is 400 ``InvalidPolicyDocument`` with S3's "Invalid Policy: ..."
    wording.  Whitespace inside the base64 is tolerated (some SDKs wrap it at 76
    columns); the signature was computed over the string as sent, so this
    leniency admits nothing unsigned.
    """
    compact = "".join(policy_b64.split())
    if not compact:
        raise _invalid_policy("Expecting '{' but found End-of-Input")
    try:
        padded = compact + "=" * (-len(compact) % 4)
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_policy("invalid Base64 encoding.") from None
    try:
        text = raw.decode("utf-8")
        document = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid_policy(_INVALID_JSON) from None
    if not isinstance(document, dict):
        raise _invalid_policy(_INVALID_JSON)
    for name in document:
        if name not in ("expiration", "conditions"):
            raise _invalid_policy(f'Unexpected: "{name}"')
    if "expiration" not in document:
        raise _invalid_policy("Policy missing expiration.")
    expiration = _parse_expiration(document["expiration"])
    if "conditions" not in document:
        raise _invalid_policy("Policy missing conditions.")
    conditions = document["conditions"]
    if not isinstance(conditions, list):
        raise _invalid_policy("Invalid 'conditions' value: must be a List.")
    sources = _condition_sources(text)
    if len(sources) != len(conditions):  # pragma: no cover - both read the same text
        sources = [json.dumps(c) for c in conditions]
    return Policy(
        expiration=expiration,
        conditions=tuple(
            _parse_condition(item, source) for item, source in zip(conditions, sources, strict=True)
        ),
    )


def _parse_expiration(value: object) -> datetime:
    if not isinstance(value, str):
        raise _invalid_policy(_INVALID_JSON)
    match = _EXPIRATION.fullmatch(value)
    if match is None:
        raise _invalid_policy(f"Invalid 'expiration' value: '{value}'")
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: '{value}'") from None


def _parse_condition(item: object, source: str) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid_policy(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one property "
                "specified."
            )
        ((name, value),) = item.items()
        if not isinstance(value, str):
            raise _invalid_policy("Invalid Simple-Condition: value must be a string.")
        # An object condition is quoted as the equivalent "eq" condition.
        return Condition("eq", name.lower(), value, 0, 0, f'["eq", "${name}", "{value}"]')
    if not isinstance(item, list):
        raise _invalid_policy("Invalid condition test: must be a List or Object.")
    if not item:
        raise _invalid_policy("Invalid Condition: missing operation identifier.")
    op = item[0]
    if not isinstance(op, str):
        raise _invalid_policy(_INVALID_JSON)
    if op in ("eq", "starts-with"):
        if len(item) != 3:
            raise _invalid_policy(f"Invalid {op}: wrong number of arguments.")
        reference, value = item[1], item[2]
        if not isinstance(reference, str):
            raise _invalid_policy(_INVALID_JSON)
        text = _scalar_text(value)
        field = reference[1:].lower() if reference.startswith("$") and len(reference) > 1 else None
        return Condition(op, field, text, 0, 0, source)
    if op == "content-length-range":
        if len(item) != 3:
            raise _invalid_policy(f"Invalid {op}: wrong number of arguments.")
        low, high = _range_bound(item[1]), _range_bound(item[2])
        if low is None or high is None:
            # A quoted non-number parses, then fails as a condition: an empty range
            # (minimum above maximum) is what evaluate_policy refuses that way.
            return Condition(op, None, "", 1, 0, source)
        return Condition(op, None, "", low, high, source)
    raise _invalid_policy(f"Invalid Condition: unknown operation '{op}'.")


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid_policy(_INVALID_JSON)


def _range_bound(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value) if re.fullmatch(r"-?\d{1,19}", value, re.ASCII) else None
    raise _invalid_policy(_INVALID_JSON)


def _condition_sources(text: str) -> list[str]:
    """The source text of each element of the top-level ``conditions`` array.

    S3 quotes a failed list condition as it appears in the document (botocore's
    ``json.dumps`` spacing, ``["starts-with", "$key", "uploads/"]``), so the
    spans are taken from the text rather than re-serialised.  *text* has
    already parsed; when a key repeats, the last wins, as in :func:`json.loads`.
    """
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\n\r":
            i += 1
        return i

    found: list[str] = []
    i = skip(skip(0) + 1)  # past "{"
    if text[i] == "}":
        return found
    while True:
        key, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # past ":"
        if key == "conditions" and text[i] == "[":
            items: list[str] = []
            i = skip(i + 1)
            while text[i] != "]":
                start = i
                _, i = decoder.raw_decode(text, i)
                items.append(text[start:i])
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
            i += 1
            found = items
        else:
            _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text[i] != ",":
            return found
        i = skip(i + 1)


# --------------------------------------------------------------------------
# Evaluation


def _violation(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")


def _exempt(name: str) -> bool:
    return name in EXEMPT_FIELDS or name.startswith(_IGNORED_PREFIX)


def evaluate_policy(
    policy: Policy, fields: Mapping[str, str], *, bucket: str, now: float
) -> PolicyVerdict:
    """Apply *policy* to the form *fields* (lower-cased names, values as submitted).

    Order: expiry; then every non-exempt field must be named by some condition
    ("Extra input fields"); then each condition in document order.  Values are
    compared as given (POST Object applies the policy to the fields as submitted
    and, failing that, to the fields with ``${filename}`` replaced).  The
    ``bucket`` condition is checked against the bucket the request addresses,
    not a form field.
    """
    if now > policy.expiration.timestamp():
        raise _violation("Policy expired.")
    covered = {c.field for c in policy.conditions if c.field is not None}
    extra = [name for name in fields if not _exempt(name) and name not in covered]
    if extra:
        raise _violation("Extra input fields: " + ", ".join(extra))
    low: int | None = None
    high: int | None = None
    for condition in policy.conditions:
        if condition.op == "content-length-range":
            if condition.minimum > condition.maximum:
                raise _violation(f"Policy Condition failed: {condition.text}")
            low = condition.minimum if low is None else max(low, condition.minimum)
            high = condition.maximum if high is None else min(high, condition.maximum)
            continue
        if not _holds(condition, fields, bucket):
            raise _violation(f"Policy Condition failed: {condition.text}")
    return PolicyVerdict(min_length=low, max_length=high)


def _holds(condition: Condition, fields: Mapping[str, str], bucket: str) -> bool:
    if condition.field is None:
        return False
    value = bucket if condition.field == "bucket" else fields.get(condition.field)
    if value is None:
        return False
    if condition.op == "eq":
        return value == condition.value
    if condition.field == "content-type":
        # Creating a POST Policy, "Matching Content-Type values in a comma-separated
        # list": each listed type must start with the prefix.
        return all(part.strip().startswith(condition.value) for part in value.split(","))
    return value.startswith(condition.value)


def substitute_filename(value: str, filename: str) -> str:
    """Replace ``${filename}`` in a field value with the upload's base name.

    HTML Forms page: "If the browser or client provides a full or partial path
    to the file, only the text following the last slash (/) or backslash (\\)
    will be used ... If no file or file name is provided, the variable is
    replaced with an empty string."
    """
    base = re.split(r"[/\\]", filename)[-1]
    return value.replace("${filename}", base)
