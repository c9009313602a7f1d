"""Fuzzing the request parsers and verifiers: a verdict or the S3 error, never a crash.

Every function here sees bytes an anonymous client chooses.  For any input it
must return (a verdict, a parsed value) or raise :class:`~plantcdn.errors.S3Error`
(:class:`~plantcdn.cfsigning.CloudFrontDenied` on the CloudFront path,
:class:`~plantcdn.scopes.ScopesError` for the operator's credentials file); any
other exception would be a 500 and a traceback in the log.  Inputs mix pure
noise with values one step away from valid ones, so the fuzzer also reaches
past the first check.  Example counts are bounded (the module runs in well
under a minute) and printed at the end.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plantcdn import cfsigning, keys, postpolicy, routing, scopes, sigv2, sigv4
from plantcdn.awschunked import (
    SIGNED_PAYLOAD,
    SIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD_TRAILER,
    AwsChunkedDecoder,
)
from plantcdn.cdn import CdnResource
from plantcdn.config import Config
from plantcdn.copyobject import parse_copy_source
from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.formdata import FormReader
from plantcdn.listing import decode_token, parse_max_keys
from plantcdn.multipart import parse_complete_document
from plantcdn.sigv4 import AuthResult, RequestParts
from plantcdn.storage import Storage

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = {AKID: Credential(AKID, SECRET)}
NOW = 1369353600.0  # 20130524T000000Z
ID_PATTERN = "[0-9]+"

EXAMPLES: Counter[str] = Counter()
T = TypeVar("T")


def fuzz(n: int) -> Callable[[T], T]:
    """Hypothesis settings for one target: *n* examples, no deadline, no example database."""
    return settings(  # type: ignore[return-value]
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def verdict(target: str, call: Callable[[], object], *allowed: type[BaseException]) -> object:
    """Run *call*; only a result or one of the *allowed* (default S3Error) may come out."""
    EXAMPLES[target] += 1
    try:
        return call()
    except allowed or (S3Error,):
        return None


# Text an HTTP layer could hand over (headers and URIs are decoded as latin-1).
wire = st.text(st.characters(codec="latin-1"), max_size=120)
anything = st.text(max_size=120)
short = st.text(st.characters(codec="latin-1"), max_size=12)


def near(valid: str) -> st.SearchStrategy[str]:
    """The valid value, noise, or the valid value with a piece cut, repeated or inserted."""
    return st.one_of(
        st.just(valid),
        wire,
        st.builds(
            lambda i, j, piece: valid[:i] + piece + valid[j:],
            st.integers(0, len(valid)),
            st.integers(0, len(valid)),
            short,
        ),
    )


# ---------------------------------------------------------------------------
# SigV4 / SigV2 header and query parsers (through the one facade)


CREDENTIAL = f"{AKID}/20130524/us-east-1/s3/aws4_request"
SIGNATURE = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
SIGNED_HEADERS = "host;range;x-amz-content-sha256;x-amz-date"

authorization_v4 = st.builds(
    lambda algo, cred, sh, sig, sep: (
        f"{algo} Credential={cred}{sep}SignedHeaders={sh}{sep}Signature={sig}"
    ),
    near("AWS4-HMAC-SHA256"),
    near(CREDENTIAL),
    near(SIGNED_HEADERS),
    near(SIGNATURE),
    st.sampled_from([",", ", ", ",,", " ", ""]),
)
authorization_v2 = st.builds(
    lambda key, sig: f"AWS {key}:{sig}", near(AKID), near("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")
)
header_values = {
    "host": near("examplebucket.s3.amazonaws.com"),
    "x-amz-date": near("20130524T000000Z"),
    "date": near("Fri, 24 May 2013 00:00:00 GMT"),
    "x-amz-content-sha256": near(sigv4.EMPTY_SHA256),
    "range": near("bytes=0-9"),
    "content-md5": wire,
    "content-type": wire,
    "x-amz-meta-a": wire,
}
header_values["authorization"] = st.one_of(authorization_v4, authorization_v2, wire)
headers_strategy = st.fixed_dictionaries({}, optional=header_values)
presign_names = [
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Content-Sha256",
    "AWSAccessKeyId", "Signature", "Expires", "uploadId", "partNumber", "acl", "versionId",
    "response-content-type", "x-amz-security-token",
]  # fmt: skip
query_strategy = st.lists(
    st.tuples(st.one_of(st.sampled_from(presign_names), wire), st.one_of(
        st.sampled_from(["AWS4-HMAC-SHA256", CREDENTIAL.replace("/", "%2F"), "20130524T000000Z",
                         "86400", "host", SIGNATURE, "", "%", "%zz", "%ff%fe", "-1",
                         "99999999999999999999"]),
        wire,
    )),
    max_size=8,
)  # fmt: skip
raw_paths = st.one_of(
    near("/examplebucket/company_7/plant_3/photo%20one.jpg"),
    st.builds(lambda s: "/" + s, wire),
)
methods = st.one_of(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "get"]), short)


@fuzz(1000)
@given(methods, raw_paths, query_strategy, headers_strategy, st.booleans())
def test_request_authentication_never_crashes(
    method: str, raw_path: str, query: list[tuple[str, str]], headers: dict[str, str],
    virtual: bool,
) -> None:  # fmt: skip
    parts = RequestParts(method, raw_path, tuple(query), headers)

    def run() -> object:
        if sigv2.is_sigv2(parts):
            return sigv2.authenticate_v2(
                parts, CREDS, now=NOW, bucket="examplebucket" if virtual else None,
                virtual_hosted=virtual,
            )  # fmt: skip
        return sigv4.authenticate(parts, CREDS, now=NOW, region="us-east-1")

    result = verdict("sigv4/sigv2 authenticate (header and query)", run)
    assert result is None or isinstance(result, AuthResult)


# ---------------------------------------------------------------------------
# POST policy: signature, decoder, evaluator


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    anything,
)  # fmt: skip
conditions = st.one_of(
    st.dictionaries(st.sampled_from(["key", "bucket", "acl", "x-amz-date", "Content-Type"]),
                    json_scalars, max_size=2),
    st.lists(st.one_of(st.sampled_from(["eq", "starts-with", "content-length-range",
                                         "$key", "$Content-Type", "$bucket"]), json_scalars),
             max_size=4),
    json_scalars,
)  # fmt: skip
policy_documents = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "expiration": st.one_of(
                near("2030-01-01T00:00:00.000Z"), json_scalars
            ),
            "conditions": st.one_of(st.lists(conditions, max_size=6), json_scalars),
        },
    ),
    st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8),
)
policy_texts = st.one_of(
    policy_documents.map(lambda d: b64(json.dumps(d))),
    anything.map(b64),
    anything,
    st.builds(lambda d, cut: b64(json.dumps(d))[:cut], policy_documents, st.integers(0, 200)),
)
form_fields = st.fixed_dictionaries(
    {},
    optional={
        "key": near("company_7/plant_3/${filename}"),
        "policy": policy_texts,
        "x-amz-algorithm": near("AWS4-HMAC-SHA256"),
        "x-amz-credential": near(CREDENTIAL),
        "x-amz-date": near("20130524T000000Z"),
        "x-amz-signature": near(SIGNATURE),
        "awsaccesskeyid": near(AKID),
        "signature": near("bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        "content-type": anything,
        "acl": anything,
        "success_action_status": anything,
        "x-amz-meta-a": anything,
    },
)


@fuzz(800)
@given(form_fields)
def test_post_signature_never_crashes(fields: dict[str, str]) -> None:
    result = verdict(
        "POST form signature",
        lambda: postpolicy.verify_post_signature(fields, CREDS, now=NOW, region="us-east-1"),
    )
    assert result is None or isinstance(result, postpolicy.PostAuth)


@fuzz(1000)
@given(policy_texts, form_fields)
def test_policy_decoder_never_crashes(policy_text: str, fields: dict[str, str]) -> None:
    verdict("POST policy decoder", lambda: postpolicy.decode_policy(policy_text))
    verdict(
        "POST ${filename} substitution",
        lambda: postpolicy.substitute_filename(fields.get("key", ""), policy_text),
    )


field_names = st.sampled_from(["key", "bucket", "acl", "Content-Type", "x-amz-meta-a",
                               "success_action_status", "x-amz-date"])
well_shaped_conditions = st.one_of(
    st.dictionaries(field_names, anything, min_size=1, max_size=1),
    st.tuples(st.sampled_from(["eq", "starts-with"]), field_names.map(lambda n: "$" + n),
              anything).map(list),
    st.tuples(st.just("content-length-range"), st.integers(-5, 2**40),
              st.integers(-5, 2**40)).map(list),
)  # fmt: skip
decodable_policies = st.lists(well_shaped_conditions, max_size=6).map(
    lambda c: b64(json.dumps({"expiration": "2030-01-01T00:00:00.000Z", "conditions": c}))
)


@fuzz(800)
@given(decodable_policies, form_fields, st.sampled_from(["examplebucket", ""]))
def test_policy_evaluator_never_crashes(
    policy_text: str, fields: dict[str, str], bucket: str
) -> None:
    policy = verdict("POST policy decoder", lambda: postpolicy.decode_policy(policy_text))
    if isinstance(policy, postpolicy.Policy):
        verdict(
            "POST policy evaluator",
            lambda: postpolicy.evaluate_policy(policy, fields, bucket=bucket, now=NOW),
        )


# ---------------------------------------------------------------------------
# Streaming body parsers


BOUNDARY = "----fuzzBoundary7MA4YWxk"
form_pieces = st.lists(
    st.one_of(
        st.binary(max_size=80),
        st.sampled_from([
            f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}--\r\n".encode(), b"\r\n",
            b'Content-Disposition: form-data; name="key"\r\n\r\n',
            b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n',
            b"Content-Type: image/png\r\n\r\n", b"company_7/plant_3/a\r\n",
            b'Content-Disposition: form-data; name="\xff\xfe"\r\n\r\n',
        ]),
    ),
    max_size=12,
)  # fmt: skip


@fuzz(1200)
@given(
    near(f"multipart/form-data; boundary={BOUNDARY}"),
    form_pieces,
    st.integers(1, 64),
)
def test_form_reader_never_crashes(content_type: str, pieces: list[bytes], step: int) -> None:
    body = b"".join(pieces)

    def run() -> object:
        reader = FormReader(content_type, max_field_bytes=4096, max_parts=20)
        events = []
        for i in range(0, len(body), step):
            events += reader.feed(body[i : i + step])
        events += reader.finish()
        return events

    verdict("multipart/form-data reader", run)


def _chunked_auth() -> AuthResult:
    return AuthResult(
        access_key_id=AKID, payload_hash=SIGNED_PAYLOAD, amz_date="20130524T000000Z",
        scope="20130524/us-east-1/s3/aws4_request",
        signing_key=sigv4.derive_signing_key(SECRET, "20130524", "us-east-1", "s3"),
        seed_signature=SIGNATURE, presigned=False,
    )  # fmt: skip


chunk_pieces = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([
            b"0\r\n", b"10\r\n", b"2000\r\n", b"\r\n", b"0;chunk-signature=" + SIGNATURE.encode(),
            b"ffffffffffffffffff\r\n", b"x-amz-checksum-crc32:AAAAAA==\r\n",
            b"x-amz-trailer-signature:" + SIGNATURE.encode() + b"\r\n", b";", b"\n",
        ]),
    ),
    max_size=12,
)  # fmt: skip


@fuzz(1500)
@given(
    st.sampled_from([SIGNED_PAYLOAD, SIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD_TRAILER]),
    chunk_pieces,
    st.integers(1, 50),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_aws_chunked_decoder_never_crashes(
    mode: str, pieces: list[bytes], step: int, length: int | None
) -> None:
    body = b"".join(pieces)

    def run() -> object:
        decoder = AwsChunkedDecoder(
            mode=mode, auth=_chunked_auth(), declared_trailers=["x-amz-checksum-crc32"],
            decoded_length=length, max_chunk_size=1 << 20,
        )  # fmt: skip
        out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
        return out, decoder.finish()

    verdict("aws-chunked decoder", run)


# ---------------------------------------------------------------------------
# Keys, routing, listing and XML bodies


tenant_keys = st.one_of(near("company_7/plant_3/leaf.png"), anything, st.text(max_size=1100))


@fuzz(2000)
@given(tenant_keys)
def test_key_rules_never_crash(key: str) -> None:
    verdict("key syntax", lambda: keys.check_key_syntax(key))
    verdict("tenant key", lambda: keys.check_tenant_key(key, ID_PATTERN))
    EXAMPLES["storable key"] += 1
    assert isinstance(keys.is_storable_key(key, ID_PATTERN), bool)


@fuzz(1200)
@given(
    st.one_of(st.none(), near("plantdb-inbox.localhost:8001"), wire),
    raw_paths,
    methods,
    st.sets(st.one_of(st.sampled_from(["uploads", "uploadId", "partNumber", "cors", "acl",
                                        "tagging", "delete", "list-type", "versions"]), short),
            max_size=4),
    st.fixed_dictionaries({}, optional={"x-amz-copy-source": wire}),
)  # fmt: skip
def test_routing_never_crashes(
    host: str | None, raw_path: str, method: str, query: set[str], headers: dict[str, str]
) -> None:
    target = verdict(
        "routing.resolve_target", lambda: routing.resolve_target(host, raw_path, "localhost")
    )
    if isinstance(target, routing.Target):
        operation = verdict(
            "routing.operation_for", lambda: routing.operation_for(method, target, query, headers)
        )
        assert operation is None or isinstance(operation, str)
        if isinstance(operation, str):
            # Every operation the router names is known to the scope table (or answered
            # before any scope check: CORS preflight, 501 NotImplemented).
            assert operation in scopes.OPERATION_CATEGORIES or operation in (
                "Preflight", "NotImplemented",
            )  # fmt: skip


@fuzz(800)
@given(near("examplebucket/company_7/plant_3/a.png?versionId=null"))
def test_copy_source_parser_never_crashes(header: str) -> None:
    verdict("x-amz-copy-source parser", lambda: parse_copy_source(header))


@fuzz(800)
@given(st.one_of(st.none(), near("1000"), wire), near("Y29tcGFueV83L3A="))
@example(max_keys="\u00b9", token="")  # found by this test: "¹".isdigit(), int("¹") raised
def test_listing_parameters_never_crash(max_keys: str | None, token: str) -> None:
    verdict("max-keys parser", lambda: parse_max_keys(max_keys))
    verdict("continuation-token decoder", lambda: decode_token(token))


xml_bodies = st.one_of(
    st.binary(max_size=200),
    near(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>"
        "</CompleteMultipartUpload>"
    ).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.just(
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><CompleteMultipartUpload>&a;'
        b"</CompleteMultipartUpload>"
    ),
)


@fuzz(800)
@given(xml_bodies)
def test_complete_multipart_document_parser_never_crashes(body: bytes) -> None:
    verdict("CompleteMultipartUpload XML", lambda: parse_complete_document(body))


# ---------------------------------------------------------------------------
# /cdn path resolution: a key inside the long-term bucket, or nothing


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> CdnResource:
    data = tmp_path_factory.mktemp("cdn-fuzz")
    config = Config(data_dir=data)
    storage = Storage(config)
    storage.prepare()
    return CdnResource(config, storage, clock=lambda: NOW)


cdn_paths = st.one_of(
    near("/cdn/company_7/plant_3/leaf%20one.png"),
    st.builds(lambda s: b"/cdn/" + s, st.binary(max_size=80)),
    st.sampled_from([b"/cdn/..%2f..%2fetc/passwd", b"/cdn/company_7/plant_3/%2e%2e/x",
                     b"/cdn/company_7/plant_3/a%00b", b"/cdn/%c0%ae%c0%ae/x",
                     b"/cdn/company_7/plant_3/..\\x"]),
)  # fmt: skip


@fuzz(2000)
@given(cdn_paths)
def test_cdn_path_resolution_stays_inside_the_bucket(cdn: CdnResource, raw: str | bytes) -> None:
    raw_path = raw.encode("latin-1") if isinstance(raw, str) else raw
    key = verdict("cdn path -> key", lambda: cdn._key_of(raw_path))
    if key is not None:
        assert isinstance(key, str)
        root = Path(cdn.bucket.root).resolve()
        resolved = (root / key).resolve()
        assert resolved == root or root in resolved.parents, (raw_path, key)
    EXAMPLES["cdn path -> error text"] += 1
    assert isinstance(cdn._path_text(raw_path), str)


# ---------------------------------------------------------------------------
# CloudFront signed URLs and cookies


_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PEM = _PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
PUBLIC_KEYS = cfsigning.load_public_keys({"K2JCJMDEHXQW5F": _PEM})


def cf_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().translate(str.maketrans("+=/", "-_~"))


cf_policies = st.one_of(
    policy_documents.map(lambda d: cf_b64(json.dumps(d).encode())),
    st.builds(
        lambda res, less, more, ip: cf_b64(json.dumps({"Statement": [{
            "Resource": res,
            "Condition": {"DateLessThan": {"AWS:EpochTime": less},
                          **({"DateGreaterThan": {"AWS:EpochTime": more}} if more else {}),
                          **({"IpAddress": {"AWS:SourceIp": ip}} if ip else {})},
        }]}).encode()),
        st.one_of(near("https://localhost/cdn/*"), json_scalars), json_scalars,
        st.one_of(st.none(), json_scalars), st.one_of(st.none(), near("10.0.0.0/8"), wire),
    ),
    wire,
)  # fmt: skip
cf_fields = st.fixed_dictionaries(
    {},
    optional={
        "Key-Pair-Id": st.one_of(st.just("K2JCJMDEHXQW5F"), wire),
        "Policy": cf_policies,
        "Expires": st.one_of(near("1369353700"), wire),
        "Signature": st.one_of(st.binary(max_size=300).map(cf_b64), wire),
        "Hash-Algorithm": st.one_of(st.sampled_from(["SHA1", "SHA256"]), wire),
    },
)


@fuzz(1200)
@given(cf_fields, st.booleans(), st.one_of(near("203.0.113.9"), wire),
       near("https://localhost/cdn/company_7/plant_3/a.png"))  # fmt: skip
def test_cloudfront_signed_request_verifier_never_crashes(
    fields: dict[str, str], as_cookies: bool, client_ip: str, url: str
) -> None:
    query = {} if as_cookies else fields
    cookies = {f"CloudFront-{k}": v for k, v in fields.items()} if as_cookies else {}
    verdict(
        "CloudFront signed URL/cookie verifier",
        lambda: cfsigning.verify_signed_request(
            resource_url=url, query=query, cookies=cookies, client_ip=client_ip, now=NOW,
            public_keys=PUBLIC_KEYS,
        ),
        cfsigning.CloudFrontDenied,
    )  # fmt: skip


@fuzz(1200)
@given(st.one_of(policy_documents.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200)))
def test_cloudfront_policy_parser_never_crashes(raw: bytes) -> None:
    verdict(
        "CloudFront custom policy parser",
        lambda: cfsigning._parse_custom_policy(raw),
        cfsigning.CloudFrontDenied,
    )


# ---------------------------------------------------------------------------
# Scoped credentials: the loader (ScopesError for an operator's mistake) and the policy


scope_entries = st.fixed_dictionaries(
    {},
    optional={
        "access_key_id": st.one_of(near("PLANT7KEY"), json_scalars),
        "secret_access_key": st.one_of(near("s" * 40), json_scalars),
        "prefixes": st.one_of(st.lists(st.one_of(near("company_7/"), json_scalars), max_size=3),
                              json_scalars),
        "operations": st.one_of(st.lists(st.one_of(st.sampled_from(sorted(scopes.CATEGORIES)),
                                                   json_scalars), max_size=4), json_scalars),
        "buckets": st.one_of(st.lists(near("plantdb-inbox"), max_size=2), json_scalars),
        "extra": json_scalars,
    },
)  # fmt: skip
scope_files = st.one_of(
    st.lists(st.one_of(scope_entries, json_scalars), max_size=3).map(json.dumps),
    anything,
    st.binary(max_size=100),
)


@fuzz(1500)
@given(scope_files)
def test_scopes_loader_never_crashes(text: str | bytes) -> None:
    result = verdict(
        "scoped credentials loader",
        lambda: scopes.load_scoped_credentials(text, reserved=["MAIN"]),
        scopes.ScopesError,
    )
    for scoped in result or ():  # type: ignore[attr-defined]
        assert scoped.credential.secret_access_key not in repr(scoped)


@fuzz(1200)
@given(
    st.one_of(st.none(), st.builds(
        scopes.Scope,
        st.lists(near("company_7/"), min_size=1, max_size=3).map(tuple),
        st.sets(st.sampled_from(sorted(scopes.CATEGORIES))).map(frozenset),
        st.one_of(st.none(), st.sets(near("plantdb-inbox"), max_size=2).map(frozenset)),
    )),
    st.one_of(st.sampled_from(sorted(set(scopes.OPERATION_CATEGORIES.values()))), st.none(),
              short),
    st.one_of(st.none(), near("plantdb-inbox")),
    st.one_of(st.none(), tenant_keys),
)  # fmt: skip
def test_scope_policy_never_crashes_and_never_grants_outside_a_prefix(
    scope: scopes.Scope | None, category: str | None, bucket: str | None, key: str | None
) -> None:
    denied = verdict(
        "scope authorize", lambda: scopes.authorize(scope, category, bucket, key) or "allowed"
    ) is None
    if scope is not None and not denied and category in scopes.CATEGORIES and key is not None:
        assert any(key.startswith(prefix) for prefix in scope.prefixes)
        assert ".." not in key.split("/")


# ---------------------------------------------------------------------------


def test_print_the_example_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """The number of fuzz examples each target ran (printed even without ``-s``)."""
    lines = ["", "fuzz examples run per target:"]
    lines += [f"  {name:46} {count:6}" for name, count in sorted(EXAMPLES.items())]
    lines.append(f"  {'TOTAL':46} {sum(EXAMPLES.values()):6}")
    with capsys.disabled():
        print("\n".join(lines))
    assert sum(EXAMPLES.values()) > 0

