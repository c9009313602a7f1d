"""Signature forgery battery: every single-byte and single-field mutation of a signed request.

Each battery starts from a request a real client signed (botocore's SigV4 and
SigV2 signers, its presigned URLs and POST forms, AWS's documented aws-chunked
example plus a chunked body signed here per the "sigv4-streaming" pages) and
checks that the unmutated request verifies.  Then every bit of every byte of
each signed component (signature, each signed header value, the path, each
signed query value, the date, the credential scope, the POST policy and
fields, the chunk framing and data) is flipped one at a time, and a table of
single-field mutations (another key, method, region, day, expiry, a signed
header removed or added, a signature replayed from another request, ...) is
applied.  Every mutation must be refused with a 4xx S3 error.

A mutation may leave the request *the same request*: ``%2f`` for ``%2F`` in a
path, a header value whose only change is white space HTTP and SigV4 trim.
Those are not forgeries (the server acts exactly as for the original); each
battery names the one equivalence it grants (an oracle independent of the code
under test) and counts such acceptances separately.  Any other acceptance
fails the test.

The counts are printed at the end of the module (the lead quotes them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import attrs
import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from conftest import INBOX, RunningServer, snapshot

from plantcdn.awschunked import SIGNED_PAYLOAD, SIGNED_PAYLOAD_TRAILER, AwsChunkedDecoder
from plantcdn.call import parse_query
from plantcdn.config import Config
from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.postpolicy import decode_policy, evaluate_policy, verify_post_signature
from plantcdn.routing import operation_for, resolve_target
from plantcdn.sigv4 import AuthResult, RequestParts
from plantcdn.verification import Verifier

AKID = "AKIAFORGERYTESTKEY01"
SECRET = "forgery-test-secret-key-0123456789abcdefgh"
OTHER_AKID = "AKIAFORGERYOTHERKEY2"
OTHER_SECRET = "another-valid-secret-of-another-user-0123"
REGION = "us-east-1"
ENDPOINT = "http://127.0.0.1:8001"
KEY = "company_7/plant_3/leaf one+two.png"
PATH = "/plantdb-inbox/company_7/plant_3/leaf%20one%2Btwo.png"
BODY = b"the signed body of a leaf photo"
META = {"Content-Type": "image/png", "x-amz-meta-plant": "basil", "x-amz-storage-class": "STANDARD"}

TALLY: dict[str, Counter[str]] = {}
EQUIVALENT: dict[str, list[str]] = {}


def config() -> Config:
    return attrs.evolve(
        Config(), credentials=(Credential(AKID, SECRET), Credential(OTHER_AKID, OTHER_SECRET))
    )


VERIFIER = Verifier(config())


# ---------------------------------------------------------------------------
# Mutation machinery


def flips(text: str) -> Iterator[tuple[str, str]]:
    """Every single-bit flip of every byte of *text* (latin-1, as the HTTP layer decodes)."""
    raw = text.encode("latin-1")
    for index in range(len(raw)):
        for bit in range(8):
            mutated = bytearray(raw)
            mutated[index] ^= 1 << bit
            yield f"byte {index} bit {bit}", mutated.decode("latin-1")


def same_when_decoded(a: str, b: str) -> bool:
    """Percent-encoding is not meaning: ``%2f`` and ``%2F`` name the same byte."""
    return unquote_to_bytes(a) == unquote_to_bytes(b)


def same_when_trimmed(a: str, b: str) -> bool:
    """SigV4's Trimall / HTTP's optional white space: leading, trailing and runs of spaces."""
    return " ".join(a.split(" ")).strip(" \t") == " ".join(b.split(" ")).strip(" \t") and (
        " ".join(a.split()) == " ".join(b.split())
    )


def never(a: str, b: str) -> bool:
    return False


class Battery:
    """Tries mutations against one verdict function and tallies the outcomes."""

    def __init__(self, name: str, verify: Callable[[Any], object]) -> None:
        self.name = name
        self.verify = verify
        self.tally: Counter[str] = TALLY.setdefault(name, Counter())
        self.forged: list[str] = []

    def baseline(self, request: Any) -> None:
        self.verify(request)  # must not raise: the battery starts from a valid request

    def attempt(self, label: str, request: Any, *, equivalent: bool = False) -> None:
        self.tally["tried"] += 1
        try:
            self.verify(request)
        except S3Error as error:
            assert 400 <= error.status < 500 or error.code == "NotImplemented", (label, error)
            self.tally["refused"] += 1
            return
        if equivalent:
            self.tally["accepted as the same request"] += 1
            EQUIVALENT.setdefault(self.name, []).append(label)
        else:
            self.forged.append(label)

    def flip_all(
        self,
        component: str,
        value: str,
        rebuild: Callable[[str], Any],
        same: Callable[[str, str], bool] = never,
    ) -> None:
        for where, mutated in flips(value):
            self.attempt(f"{component} {where}", rebuild(mutated), equivalent=same(value, mutated))

    def check(self) -> None:
        assert not self.forged, f"{len(self.forged)} forgeries accepted: {self.forged[:20]}"
        assert self.tally["tried"] == self.tally["refused"] + self.tally[
            "accepted as the same request"
        ]


def parts_with(parts: RequestParts, **changes: Any) -> RequestParts:
    return attrs.evolve(parts, **changes)


def with_header(parts: RequestParts, name: str, value: str | None) -> RequestParts:
    headers = dict(parts.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return parts_with(parts, headers=headers)


def with_query(parts: RequestParts, index: int, value: str) -> RequestParts:
    query = list(parts.query)
    query[index] = (query[index][0], value)
    return parts_with(parts, query=tuple(query))


def flip_path(battery: Battery, base: RequestParts) -> None:
    battery.flip_all(
        "path", base.raw_path, lambda v: parts_with(base, raw_path=v), same_when_decoded
    )


def to_parts(request: AWSRequest) -> RequestParts:
    """What plantcdn's HTTP layer hands the verifier for this request on the wire."""
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    headers = {name.lower(): str(value) for name, value in prepared.headers.items()}
    headers.setdefault("host", split.netloc)
    pairs, _ = parse_query(split.query)
    return RequestParts(prepared.method, split.path, pairs, headers)


def amz_time(text: str) -> float:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def authenticate(parts: RequestParts, now: float) -> AuthResult:
    """What ``S3App`` does before a handler runs: route the request, then verify it.

    Routing comes first there too (``S3App._parse``): a method it does not know
    (``pUT``: methods are case-sensitive) or a path it cannot decode is refused
    before the signature is looked at.
    """
    target = resolve_target(parts.headers.get("host"), parts.raw_path, "localhost")
    operation = operation_for(
        parts.method, target, {name for name, _ in parts.query}, parts.headers
    )
    result = VERIFIER.authenticate(
        parts, now=now, bucket=target.bucket, virtual_hosted=target.virtual_hosted
    )
    if operation == "NotImplemented":  # no handler: S3App._dispatch answers 501
        raise S3Error("NotImplemented")
    return result


# ---------------------------------------------------------------------------
# SigV4, Authorization header


def sigv4_header_request(
    method: str = "PUT", path: str = PATH, query: str = "x-id=PutObject&tagging=",
    key: tuple[str, str] = (AKID, SECRET),
) -> RequestParts:  # fmt: skip
    url = f"{ENDPOINT}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=BODY, headers=dict(META))
    S3SigV4Auth(Credentials(*key), "s3", REGION).add_auth(request)
    return to_parts(request)


def test_sigv4_header_mutations_are_refused() -> None:
    base = sigv4_header_request()
    now = amz_time(base.headers["x-amz-date"])
    battery = Battery("SigV4 Authorization header", lambda p: authenticate(p, now))
    battery.baseline(base)
    authorization = base.headers["authorization"]
    credential = authorization.split("Credential=")[1].split(",")[0]
    signed_headers = authorization.split("SignedHeaders=")[1].split(",")[0]
    signature = authorization.split("Signature=")[1]

    def auth_with(old: str) -> Callable[[str], RequestParts]:
        return lambda new: with_header(base, "authorization", authorization.replace(old, new))

    battery.flip_all("signature", signature, auth_with(signature))
    battery.flip_all("credential scope", credential, auth_with(credential))
    battery.flip_all("SignedHeaders", signed_headers, auth_with(signed_headers))
    signed = signed_headers.split(";")
    for name in signed:
        battery.flip_all(
            f"header {name}",
            base.headers[name],
            lambda v, n=name: with_header(base, n, v),
            same_when_trimmed,
        )
    flip_path(battery, base)
    for index, (name, value) in enumerate(base.query):
        battery.flip_all(
            f"query {name}", value or "x", lambda v, i=index: with_query(base, i, v),
            same_when_decoded if value else never,
        )  # fmt: skip
    battery.flip_all("method", base.method, lambda v: parts_with(base, method=v))

    other_day = credential.replace(credential.split("/")[1], "20200101")
    fields: dict[str, RequestParts] = {
        "method GET": parts_with(base, method="GET"),
        "method POST": parts_with(base, method="POST"),
        "other key id, same signature": auth_with(AKID)(OTHER_AKID),
        "region us-west-2": auth_with("/us-east-1/")("/us-west-2/"),
        "service s3-object-lambda": auth_with("/s3/")("/s3-object-lambda/"),
        "credential on another day": auth_with(credential)(other_day),
        "signature of another request": auth_with(signature)(
            sigv4_header_request(path=PATH + "2").headers["authorization"].split("Signature=")[1]
        ),
        "signed by another valid key": with_header(
            base, "authorization", sigv4_header_request(key=(OTHER_AKID, SECRET))
            .headers["authorization"],
        ),  # fmt: skip
        "x-amz-date an hour later": with_header(
            base, "x-amz-date", base.headers["x-amz-date"][:9] + "230000Z"
        ),
        "payload hash UNSIGNED-PAYLOAD": with_header(
            base, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"
        ),
        "payload hash of another body": with_header(
            base, "x-amz-content-sha256", hashlib.sha256(b"evil").hexdigest()
        ),
        "payload hash streaming": with_header(base, "x-amz-content-sha256", SIGNED_PAYLOAD),
        "query parameter added": parts_with(base, query=(*base.query, ("acl", ""))),
        "query parameter removed": parts_with(base, query=base.query[:-1]),
        "query parameter duplicated": parts_with(base, query=(*base.query, base.query[0])),
        "path of another key": parts_with(base, raw_path=PATH.replace("plant_3", "plant_4")),
        "path with a traversal": parts_with(base, raw_path=PATH.replace("plant_3/", "plant_3/../")),
        "other bucket": parts_with(base, raw_path=PATH.replace("inbox", "longterm")),
        "host of another bucket": with_header(base, "host", "plantdb-longterm.127.0.0.1:8001"),
        "unsigned x-amz header added": with_header(base, "x-amz-acl", "public-read"),
        "signed header removed from list": auth_with(signed_headers)(
            signed_headers.replace("content-type;", "")
        ),
        "signed header added to list": auth_with(signed_headers)(signed_headers + ";range"),
        "signature empty": auth_with(signature)(""),
        "signature upper-case": auth_with(signature)(signature.upper()),
        "signature truncated": auth_with(signature)(signature[:-1]),
        "signature doubled": auth_with(signature)(signature + signature),
        "algorithm HMAC-SHA1": auth_with("AWS4-HMAC-SHA256")("AWS4-HMAC-SHA1"),
        "authorization removed": with_header(base, "authorization", None),
        "date header instead of x-amz-date": with_header(
            with_header(base, "x-amz-date", None), "date", "Wed, 01 May 2024 12:00:00 GMT"
        ),
    }
    for name in signed:
        fields[f"signed header {name} removed"] = with_header(base, name, None)
        fields[f"signed header {name} emptied"] = with_header(base, name, "")
    for label, parts in fields.items():
        battery.attempt(label, parts)
    battery.verify = lambda p: authenticate(p, now + 16 * 60)
    battery.attempt("replayed 16 minutes later", base)
    battery.verify = lambda p: authenticate(p, now - 16 * 60)
    battery.attempt("sent 16 minutes before it was signed", base)
    battery.check()


# ---------------------------------------------------------------------------
# SigV4 presigned URL


def sigv4_presigned(method: str = "GET", expires: int = 900) -> RequestParts:
    url = f"{ENDPOINT}{PATH}?response-content-type=image%2Fpng"
    request = AWSRequest(method=method, url=url, headers={"x-amz-meta-plant": "basil"})
    S3SigV4QueryAuth(Credentials(AKID, SECRET), "s3", REGION, expires=expires).add_auth(request)
    parts = to_parts(request)
    # The signed x-amz-meta header is sent along; botocore leaves it a header.
    return parts


def test_sigv4_presigned_url_mutations_are_refused() -> None:
    base = sigv4_presigned()
    params = dict(base.query)
    now = amz_time(params["X-Amz-Date"]) + 1
    battery = Battery("SigV4 presigned URL", lambda p: authenticate(p, now))
    battery.baseline(base)
    for index, (name, value) in enumerate(base.query):
        battery.flip_all(
            f"query {name}", value, lambda v, i=index: with_query(base, i, v), same_when_decoded
        )
    for name in params["X-Amz-SignedHeaders"].split("%3B"):
        battery.flip_all(
            f"header {name}", base.headers[name], lambda v, n=name: with_header(base, n, v),
            same_when_trimmed,
        )  # fmt: skip
    flip_path(battery, base)
    battery.flip_all("method", base.method, lambda v: parts_with(base, method=v))

    def param(name: str, value: str | None) -> RequestParts:
        query = [(n, v) for n, v in base.query if n != name]
        if value is not None:
            query.append((name, value))
        return parts_with(base, query=tuple(query))

    longer = sigv4_presigned(expires=7 * 24 * 3600)
    fields = {
        "X-Amz-Expires a week": param("X-Amz-Expires", "604800"),
        "X-Amz-Expires removed": param("X-Amz-Expires", None),
        "X-Amz-Date a day later": param("X-Amz-Date", params["X-Amz-Date"].replace(
            params["X-Amz-Date"][:8], str(int(params["X-Amz-Date"][:8]) + 1))),
        "X-Amz-Signature of a longer-lived URL": param(
            "X-Amz-Signature", dict(longer.query)["X-Amz-Signature"]
        ),
        "X-Amz-SignedHeaders host only": param("X-Amz-SignedHeaders", "host"),
        "X-Amz-Credential of another key": param(
            "X-Amz-Credential", params["X-Amz-Credential"].replace(AKID, OTHER_AKID)
        ),
        "X-Amz-Algorithm removed": param("X-Amz-Algorithm", None),
        "X-Amz-Signature removed": param("X-Amz-Signature", None),
        "response-content-type changed": param("response-content-type", "text%2Fhtml"),
        "unsigned parameter added": param("response-content-disposition", "attachment"),
        "x-amz-content-sha256 parameter added": param(
            "X-Amz-Content-Sha256", hashlib.sha256(b"x").hexdigest()
        ),
        "method PUT": parts_with(base, method="PUT"),
        "method DELETE": parts_with(base, method="DELETE"),
        "path of another key": parts_with(base, raw_path=PATH.replace("plant_3", "plant_4")),
        "signed header dropped": with_header(base, "x-amz-meta-plant", None),
        "unsigned x-amz header added": with_header(base, "x-amz-acl", "public-read"),
        "authorization header added": with_header(base, "authorization", "AWS4-HMAC-SHA256 x"),
    }  # fmt: skip
    for label, parts in fields.items():
        battery.attempt(label, parts)
    battery.verify = lambda p: authenticate(p, now + 900)
    battery.attempt("used after it expired", base)
    battery.check()


# ---------------------------------------------------------------------------
# SigV2, header and query


V2_NOW = time.time()


class FixedDateHmacV1Auth(HmacV1Auth):
    """botocore's SigV2 header signer with its Date pinned, so 'now' is known."""

    def _get_date(self) -> str:
        from email.utils import formatdate

        return formatdate(V2_NOW, usegmt=True)


def sigv2_header_request(path: str = PATH) -> RequestParts:
    request = AWSRequest(
        method="PUT",
        url=f"{ENDPOINT}{path}?uploadId=abc123&partNumber=7",
        data=BODY,
        headers={**META, "Content-MD5": base64.b64encode(hashlib.md5(BODY).digest()).decode()},  # noqa: S324
    )
    request.auth_path = path
    FixedDateHmacV1Auth(Credentials(AKID, SECRET)).add_auth(request)
    return to_parts(request)


def test_sigv2_header_mutations_are_refused() -> None:
    base = sigv2_header_request()
    battery = Battery("SigV2 Authorization header", lambda p: authenticate(p, V2_NOW))
    battery.baseline(base)
    authorization = base.headers["authorization"]
    signature = authorization.split(":", 1)[1]
    battery.flip_all(
        "signature", signature,
        lambda v: with_header(base, "authorization", f"AWS {AKID}:{v}"),
    )  # fmt: skip
    battery.flip_all(
        "access key id", AKID, lambda v: with_header(base, "authorization", f"AWS {v}:{signature}")
    )
    for name in ("content-md5", "content-type", "date", "x-amz-meta-plant", "x-amz-storage-class"):
        battery.flip_all(
            f"header {name}", base.headers[name], lambda v, n=name: with_header(base, n, v),
            same_when_trimmed,
        )  # fmt: skip
    flip_path(battery, base)
    for index, (name, value) in enumerate(base.query):  # uploadId and partNumber are signed
        battery.flip_all(
            f"query {name}", value, lambda v, i=index: with_query(base, i, v), same_when_decoded
        )
    battery.flip_all("method", base.method, lambda v: parts_with(base, method=v))
    fields = {
        "other key id": with_header(base, "authorization", f"AWS {OTHER_AKID}:{signature}"),
        "signature of another path": with_header(
            base, "authorization", sigv2_header_request(PATH + "2").headers["authorization"]
        ),
        "method POST": parts_with(base, method="POST"),
        "content-md5 removed": with_header(base, "content-md5", None),
        "content-type removed": with_header(base, "content-type", None),
        "x-amz-meta removed": with_header(base, "x-amz-meta-plant", None),
        "x-amz-meta added": with_header(base, "x-amz-meta-evil", "1"),
        "x-amz-date added": with_header(base, "x-amz-date", base.headers["date"]),
        "sub-resource added": parts_with(base, query=(*base.query, ("acl", ""))),
        "sub-resource removed": parts_with(base, query=base.query[:1]),
        "path of another bucket": parts_with(base, raw_path=PATH.replace("inbox", "longterm")),
        "signature without padding": with_header(
            base, "authorization", f"AWS {AKID}:{signature.rstrip('=')}"
        ),
    }
    for label, parts in fields.items():
        battery.attempt(label, parts)
    battery.verify = lambda p: authenticate(p, V2_NOW + 16 * 60)
    battery.attempt("replayed 16 minutes later", base)
    battery.check()


def sigv2_presigned(expires_at: int) -> RequestParts:
    class Pinned(HmacV1QueryAuth):
        def _get_date(self) -> str:
            return str(expires_at)

    request = AWSRequest(
        method="GET", url=f"{ENDPOINT}{PATH}?response-content-type=image%2Fpng", headers={}
    )
    request.auth_path = PATH
    Pinned(Credentials(AKID, SECRET)).add_auth(request)
    return to_parts(request)


def test_sigv2_presigned_url_mutations_are_refused() -> None:
    expires_at = int(V2_NOW) + 600
    base = sigv2_presigned(expires_at)
    battery = Battery("SigV2 presigned URL", lambda p: authenticate(p, V2_NOW))
    battery.baseline(base)
    for index, (name, value) in enumerate(base.query):
        battery.flip_all(
            f"query {name}", value, lambda v, i=index: with_query(base, i, v), same_when_decoded
        )
    flip_path(battery, base)
    battery.flip_all("method", base.method, lambda v: parts_with(base, method=v))
    names = [name for name, _ in base.query]

    def param(name: str, value: str) -> RequestParts:
        return with_query(base, names.index(name), value)

    fields = {
        "Expires a day later": param("Expires", str(expires_at + 86400)),
        "Signature of a longer-lived URL": param(
            "Signature", dict(sigv2_presigned(expires_at + 86400).query)["Signature"]
        ),
        "other key id": param("AWSAccessKeyId", OTHER_AKID),
        "response-content-type changed": param("response-content-type", "text%2Fhtml"),
        "method PUT": parts_with(base, method="PUT"),
        "path of another key": parts_with(base, raw_path=PATH.replace("plant_3", "plant_4")),
        "x-amz-meta header added": with_header(base, "x-amz-meta-evil", "1"),
        "Signature removed": parts_with(
            base, query=tuple((n, v) for n, v in base.query if n != "Signature")
        ),
    }
    for label, parts in fields.items():
        battery.attempt(label, parts)
    battery.verify = lambda p: authenticate(p, expires_at + 1)
    battery.attempt("used after it expired", base)
    battery.check()


# ---------------------------------------------------------------------------
# POST forms (v4 and v2): the signature plus the policy, as PostUpload._start checks them


def presigned_post(signature_version: str | None) -> dict[str, str]:
    boto_config = BotoConfig(signature_version=signature_version) if signature_version else None
    client: Any = boto3.client(
        "s3", endpoint_url=ENDPOINT, region_name=REGION,
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, config=boto_config,
    )  # fmt: skip
    post = client.generate_presigned_post(
        INBOX,
        KEY,
        Fields={"Content-Type": "image/png", "x-amz-meta-plant": "basil"},
        Conditions=[
            {"Content-Type": "image/png"},
            {"x-amz-meta-plant": "basil"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=600,
    )
    return {name.lower(): value for name, value in post["fields"].items()}


def post_gate(fields: Mapping[str, str], *, bucket: str = INBOX, now: float | None = None) -> None:
    """The checks a POST passes before a byte is stored (plantcdn.postobject, ``_start``)."""
    when = time.time() if now is None else now
    verify_post_signature(fields, VERIFIER.credentials, now=when, region=REGION)
    policy = decode_policy(fields["policy"])
    evaluate_policy(policy, fields, bucket=bucket, now=when)


def reencoded_policy(policy_b64: str, change: Callable[[dict[str, Any]], None]) -> str:
    document = json.loads(base64.b64decode(policy_b64))
    change(document)
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_post_form_mutations_are_refused(version: str) -> None:
    base = presigned_post(version)
    battery = Battery(f"POST form ({'v4' if version == 's3v4' else 'v2'})", post_gate)
    battery.baseline(base)
    for name, value in base.items():
        battery.flip_all(f"field {name}", value, lambda v, n=name: {**base, n: v})

    def policy_edit(change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
        return {**base, "policy": reencoded_policy(base["policy"], change)}

    def longer(document: dict[str, Any]) -> None:
        document["expiration"] = "2099-01-01T00:00:00Z"

    def bigger(document: dict[str, Any]) -> None:
        for condition in document["conditions"]:
            if isinstance(condition, list) and condition[0] == "content-length-range":
                condition[2] = 5 * 1024**3

    def any_key(document: dict[str, Any]) -> None:
        document["conditions"] = [
            ["starts-with", "$key", ""] if isinstance(c, dict) and "key" in c else c
            for c in document["conditions"]
        ]

    fields: dict[str, dict[str, str]] = {
        "policy expiration extended": policy_edit(longer),
        "policy size limit raised": policy_edit(bigger),
        "policy key condition widened": policy_edit(any_key),
        "key of another tenant": {**base, "key": KEY.replace("company_7", "company_8")},
        "field added that the policy does not name": {**base, "x-amz-meta-evil": "1"},
        "acl added": {**base, "acl": "public-read"},
        "content-type changed": {**base, "content-type": "text/html"},
        "signature removed": {
            k: v for k, v in base.items() if k not in ("x-amz-signature", "signature")
        },
        "policy removed": {k: v for k, v in base.items() if k != "policy"},
        "policy re-serialised without re-signing": {
            **base, "policy": reencoded_policy(base["policy"], lambda d: None)
        },  # fmt: skip
    }
    if version == "s3v4":
        fields["credential of another key"] = {
            **base, "x-amz-credential": base["x-amz-credential"].replace(AKID, OTHER_AKID)
        }  # fmt: skip
        fields["credential of another day"] = {
            **base,
            "x-amz-credential": base["x-amz-credential"].replace(
                base["x-amz-date"][:8], "20200101"
            ),
        }
    else:
        fields["other access key id"] = {**base, "awsaccesskeyid": OTHER_AKID}
    for label, form in fields.items():
        battery.attempt(label, form)
    battery.verify = lambda f: post_gate(f, bucket="plantdb-longterm")
    battery.attempt("the same form posted to the other bucket", base)
    battery.verify = lambda f: post_gate(f, now=time.time() + 601)
    battery.attempt("posted after the policy expired", base)
    battery.check()


# ---------------------------------------------------------------------------
# aws-chunked bodies


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


class LiteralPayloadAuth(S3SigV4Auth):
    """botocore's SigV4 signer with ``x-amz-content-sha256`` set to a streaming mode."""

    def __init__(self, mode: str) -> None:
        super().__init__(Credentials(AKID, SECRET), "s3", REGION)
        self.mode = mode

    def payload(self, request: AWSRequest) -> str:
        return self.mode


def chunked_request(mode: str, sizes: list[int], trailer: bool) -> tuple[AuthResult, bytes, int]:
    """A signed streaming request's verified headers, its body, and the decoded length.

    The chunk signatures are computed here from the documented algorithm
    (``sigv4-streaming``, ``sigv4-streaming-trailers``), not by plantcdn.
    """
    decoded = sum(sizes)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
        "x-amz-content-sha256": mode,
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-sha256"
    request = AWSRequest(method="PUT", url=f"{ENDPOINT}{PATH}", data=b"", headers=headers)
    LiteralPayloadAuth(mode).add_auth(request)
    parts = to_parts(request)
    auth = authenticate(parts, amz_time(parts.headers["x-amz-date"]))
    prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n"
    empty = hashlib.sha256(b"").hexdigest()
    previous = auth.seed_signature
    body = b""
    payload = b""
    for index, size in enumerate([*sizes, 0]):
        data = bytes((index * 31 + i) % 251 for i in range(size))
        payload += data
        digest = hashlib.sha256(data).hexdigest()
        previous = _hmac_hex(auth.signing_key, f"{prefix}{previous}\n{empty}\n{digest}")
        body += f"{size:x};chunk-signature={previous}\r\n".encode() + data
        body += b"\r\n" if size else b""
    if trailer:
        checksum = base64.b64encode(hashlib.sha256(payload).digest()).decode()
        line = f"x-amz-checksum-sha256:{checksum}\n"
        trailer_prefix = f"AWS4-HMAC-SHA256-TRAILER\n{auth.amz_date}\n{auth.scope}\n"
        signature = _hmac_hex(
            auth.signing_key,
            f"{trailer_prefix}{previous}\n{hashlib.sha256(line.encode()).hexdigest()}",
        )
        body += f"{line.strip()}\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()
    else:
        body += b"\r\n"
    return auth, body, decoded


def decode_chunked(auth: AuthResult, mode: str, body: bytes, decoded: int, trailer: bool) -> bytes:
    decoder = AwsChunkedDecoder(
        mode=mode,
        auth=auth,
        declared_trailers=["x-amz-checksum-sha256"] if trailer else [],
        decoded_length=decoded,
    )
    out = decoder.feed(body)
    decoder.finish()
    return out


def byte_flips(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    for index in range(len(data)):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[index] ^= 1 << bit
            yield index, bit, bytes(mutated)


def trailer_name_case_only(original: bytes, mutated: bytes, index: int) -> bool:
    """Trailer names are header names, so case-insensitive (``X-Amz-Checksum-Sha256``)."""
    final_chunk = original.rindex(b"0;chunk-signature=")
    trailers_start = original.index(b"\r\n", final_chunk) + 2
    if index < trailers_start:
        return False
    line_start = original.rfind(b"\n", 0, index) + 1
    in_name = b":" not in original[line_start : index + 1]
    return in_name and original.lower() == mutated.lower()


@pytest.mark.parametrize(
    ("mode", "trailer"), [(SIGNED_PAYLOAD, False), (SIGNED_PAYLOAD_TRAILER, True)]
)
def test_aws_chunked_mutations_are_refused(mode: str, trailer: bool) -> None:
    sizes = [8192, 100]
    auth, body, decoded = chunked_request(mode, sizes, trailer)
    battery = Battery(
        f"aws-chunked ({'signed trailer' if trailer else 'signed chunks'})",
        lambda b: decode_chunked(auth, mode, b, decoded, trailer),
    )
    battery.baseline(body)
    # Every bit of every byte: chunk sizes, signatures, data, CRLFs, trailers.
    for index, bit, mutated in byte_flips(body):
        battery.attempt(
            f"byte {index} bit {bit}",
            mutated,
            equivalent=trailer and trailer_name_case_only(body, mutated, index),
        )
    first_end = body.index(b"\r\n", body.index(b"\r\n") + 2) + 2  # after chunk 1's data
    _, other_body, _ = chunked_request(mode, sizes, trailer)  # signed a second later or again
    fields = {
        "final chunk dropped": body[: body.rindex(b"0;chunk-signature")],
        "second chunk dropped": body[:first_end] + body[body.rindex(b"0;chunk-signature"):],
        "body truncated": body[:-3],
        "extra chunk appended": body + body[:first_end],
        "first chunk repeated": body[:first_end] + body,
        "chunk data changed, size kept": body.replace(bytes([5]), bytes([6]), 1),
    }
    if other_body != body:
        fields["chunk replayed from another request"] = other_body
    for label, mutated in fields.items():
        battery.attempt(label, mutated)
    battery.verify = lambda b: decode_chunked(auth, mode, b, decoded + 1, trailer)
    battery.attempt("declared decoded length off by one", body)
    battery.check()


# ---------------------------------------------------------------------------
# A sample against the real daemon


def send(server: RunningServer, parts: RequestParts, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        query = "&".join(f"{n}={v}" for n, v in parts.query)
        target = parts.raw_path + (f"?{query}" if query else "")
        conn.putrequest(parts.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in parts.headers.items():
            if name != "content-length":
                conn.putheader(name, value.encode("latin-1"))
        conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_sample_of_mutations_is_refused_by_the_daemon(server: RunningServer) -> None:
    """The HTTP path (routing, spooling, the streamed PUT) refuses what the verifier refuses."""
    key = f"company_7/plant_{int(time.time() * 1000) % 10**9}/forged.png"
    path = "/plantdb-inbox/" + key
    url = f"{server.url}{path}"
    request = AWSRequest(method="PUT", url=url, data=BODY, headers=dict(META))
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    base = to_parts(request)
    authorization = base.headers["authorization"]
    signature = authorization.split("Signature=")[1]
    tally = TALLY.setdefault("real daemon sample (SigV4 PUT)", Counter())
    before = snapshot(server.bucket_dir(INBOX))
    samples: list[tuple[str, RequestParts, bytes]] = []
    for position in (0, 17, 40, 63):
        flipped = signature[:position] + ("0" if signature[position] != "0" else "1")
        flipped += signature[position + 1 :]
        samples.append((f"signature char {position}", with_header(
            base, "authorization", authorization.replace(signature, flipped)), BODY))
    for name in ("content-type", "x-amz-meta-plant", "x-amz-date", "x-amz-content-sha256", "host"):
        value = base.headers[name]
        samples.append((f"header {name}", with_header(base, name, value[:-1] + chr(
            ord(value[-1]) ^ 1)), BODY))
    samples += [
        ("path of another tenant", parts_with(base, raw_path=path.replace("company_7",
                                                                          "company_8")), BODY),
        ("method POST", parts_with(base, method="POST"), BODY),
        ("query parameter added", parts_with(base, query=(("acl", ""),)), BODY),
        ("other body, same signed hash", base, b"X" + BODY[1:]),
        ("unsigned x-amz header added", with_header(base, "x-amz-acl", "public-read"), BODY),
    ]  # fmt: skip
    for label, parts, body in samples:
        status, answer = send(server, parts, body)
        tally["tried"] += 1
        assert 400 <= status < 500, (label, status, answer)
        tally["refused"] += 1
    assert snapshot(server.bucket_dir(INBOX)) == before
    status, answer = send(server, base, BODY)
    assert status == 200, answer  # and the unmutated request is accepted


def test_print_the_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """The totals the lead quotes (printed even without ``-s``)."""
    total: Counter[str] = Counter()
    lines = ["", "signature-forgery battery: mutations tried / refused (/ same request)"]
    for name, tally in TALLY.items():
        total.update(tally)
        same = tally["accepted as the same request"]
        lines.append(
            f"  {name:42} {tally['tried']:7} / {tally['refused']:7}"
            + (f"  (+{same} equivalent encodings accepted)" if same else "")
        )
    lines.append(
        f"  {'TOTAL':42} {total['tried']:7} / {total['refused']:7}"
        f"  (+{total['accepted as the same request']} equivalent)"
    )
    with capsys.disabled():
        print("\n".join(lines))
    assert total["tried"] > 0

