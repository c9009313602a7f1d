"""Bucket CORS rules: parsing, validation, matching and answers.  Pure, no reactor.

Expected headers and refusals are those LocalStack records against real S3
(``test_s3_cors.snapshot.json``); the evaluation order is the S3 User Guide's
"How does Amazon S3 evaluate the CORS configuration on a bucket?".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from hypothesis import given
from hypothesis import strategies as st

from plantcdn.config import Config, ConfigError
from plantcdn.corsrules import (
    NO_ORIGIN,
    NOT_ALLOWED,
    NOT_ENABLED,
    VARY,
    CorsConfiguration,
    CorsRule,
    load_cors_file,
    match_rule,
    preflight_headers,
    response_headers,
    split_header_list,
)
from plantcdn.errors import S3Error
from plantcdn.xmlbody import parse_xml

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cors.json"
BUCKETS = ("plantdb-inbox", "plantdb-longterm")


def config(*rules: dict[str, Any]) -> CorsConfiguration:
    return CorsConfiguration.from_json({"CORSRules": list(rules)})


DJANGO = {
    "AllowedOrigins": ["http://localhost:8000", "http://*.plants.test"],
    "AllowedMethods": ["POST", "GET"],
    "AllowedHeaders": ["x-amz-*", "Content-Type"],
    "ExposeHeaders": ["ETag"],
    "MaxAgeSeconds": 3000,
}
ANYONE_GETS = {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]}


def boto_xml(cors: dict[str, Any]) -> bytes:
    """The PutBucketCors body botocore serialises for *cors* (never sent)."""
    client: Any = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="A",
        aws_secret_access_key="B",
    )
    captured: dict[str, bytes] = {}

    def capture(request: AWSRequest, **_: Any) -> Any:
        captured["body"] = request.body
        raise RuntimeError("captured")

    client.meta.events.register("before-send.s3.PutBucketCors", capture)
    with pytest.raises(RuntimeError, match="captured"):
        client.put_bucket_cors(Bucket="plantdb-inbox", CORSConfiguration=cors)
    return captured["body"]


# ---------------------------------------------------------------------------
# Parsing and validation


def test_botocore_xml_round_trips_to_the_same_json() -> None:
    """What boto3 sends for put_bucket_cors parses to the configuration it was given."""
    cors = {"CORSRules": [{"ID": "django", **DJANGO}, ANYONE_GETS]}
    parsed = CorsConfiguration.from_xml(parse_xml(boto_xml(cors), 65536))
    assert parsed.to_json() == cors


def test_rendered_xml_parses_back() -> None:
    """The GetBucketCors body (namespaced) parses back to the same configuration."""
    original = config(DJANGO, ANYONE_GETS)
    assert CorsConfiguration.from_xml(parse_xml(original.to_xml(), 65536)) == original
    assert b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in original.to_xml()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PATCH"]},
            "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
        ),
        (
            {"AllowedOrigins": ["http://*.*.test"], "AllowedMethods": ["GET"]},
            'AllowedOrigin "http://*.*.test" can not have more than one wildcard.',
        ),
        (
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]},
            'AllowedHeader "x-*-*" can not have more than one wildcard.',
        ),
    ],
)
def test_invalid_rules_are_refused_in_s3_words(rule: dict[str, Any], message: str) -> None:
    """Rules S3 refuses get 400 InvalidRequest with S3's message."""
    with pytest.raises(S3Error) as info:
        config(rule)
    assert (info.value.status, info.value.code, info.value.message) == (
        400,
        "InvalidRequest",
        message,
    )


@pytest.mark.parametrize(
    "document",
    [
        {"CORSRules": []},
        {"CORSRules": [{"AllowedMethods": ["GET"]}]},
        {"CORSRules": [{"AllowedOrigins": ["*"]}]},
        {"CORSRules": [{"AllowedOrigin": ["*"], "AllowedMethods": ["GET"]}]},
        {"CORSRules": [{"AllowedOrigins": "*", "AllowedMethods": ["GET"]}]},
        {"CORSRules": [{**ANYONE_GETS, "MaxAgeSeconds": "10"}]},
        {"CORSRules": [{**ANYONE_GETS, "MaxAgeSeconds": -1}]},
        {"CORSRule": [ANYONE_GETS]},
        [ANYONE_GETS],
    ],
)
def test_malformed_json_is_malformed_xml(document: Any) -> None:
    """Missing required lists, unknown keys and wrong types: MalformedXML, as S3."""
    with pytest.raises(S3Error) as info:
        CorsConfiguration.from_json(document)
    assert info.value.code == "MalformedXML"


@pytest.mark.parametrize(
    "body",
    [
        b"<CORSConfiguration/>",
        b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
        b"</CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
        b"</AllowedMethod><Bogus/></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
        b"</AllowedMethod><MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>",
        b"<CORSConfiguration><Rule/></CORSConfiguration>",
        b"<NotCORS><CORSRule/></NotCORS>",
    ],
)
def test_malformed_xml(body: bytes) -> None:
    """Elements S3's schema lacks, or required ones missing: MalformedXML."""
    with pytest.raises(S3Error) as info:
        CorsConfiguration.from_xml(parse_xml(body, 65536))
    assert info.value.code == "MalformedXML"


def test_more_than_100_rules_are_refused() -> None:
    """S3 allows at most 100 rules."""
    config(*[ANYONE_GETS] * 100)
    with pytest.raises(S3Error) as info:
        config(*[ANYONE_GETS] * 101)
    assert info.value.code == "InvalidRequest"


# ---------------------------------------------------------------------------
# Matching


@pytest.mark.parametrize(
    ("origin", "method", "headers", "matched"),
    [
        ("http://localhost:8000", "POST", [], 0),
        ("http://localhost:8000", "GET", ["X-Amz-Date", "content-type"], 0),
        ("http://a.plants.test", "POST", [], 0),
        ("http://a.b.plants.test", "POST", [], 0),  # "*" spans dots, as S3's wildcard
        ("https://a.plants.test", "POST", [], None),  # the scheme is part of the origin
        ("http://localhost:8000", "PUT", [], None),
        ("http://localhost:8000", "post", [], None),  # methods are case-sensitive
        ("http://localhost:8001", "GET", [], 1),  # falls through to the second rule
        ("http://LOCALHOST:8000", "POST", [], None),
        ("http://localhost:8000", "POST", ["authorization"], None),
        ("http://evil.test", "GET", ["authorization"], None),  # rule 2 allows no headers
    ],
)
def test_first_matching_rule_wins(
    origin: str, method: str, headers: list[str], matched: int | None
) -> None:
    """Origin (one wildcard), method and every requested header must match; rules in order."""
    cors = config(DJANGO, ANYONE_GETS)
    rule = match_rule(cors, origin, method, headers)
    assert rule == (None if matched is None else cors.rules[matched])


def test_split_header_list() -> None:
    """Access-Control-Request-Headers is a comma list; blanks and spaces are dropped."""
    assert split_header_list(" content-type, X-Amz-Date ,,") == ["content-type", "X-Amz-Date"]
    assert split_header_list(None) == []


@given(
    origin=st.text(max_size=40),
    method=st.text(max_size=8),
    headers=st.lists(st.text(max_size=20), max_size=4),
)
def test_matching_never_raises_and_wildcard_rule_takes_every_origin(
    origin: str, method: str, headers: list[str]
) -> None:
    """Any request text: a rule or None; "*" with every method and header matches any origin."""
    cors = config(DJANGO)
    assert match_rule(cors, origin, method, headers) in (None, cors.rules[0])
    everyone = config(
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["*"]}
    )
    assert match_rule(everyone, origin, "PUT", headers) is everyone.rules[0]


# ---------------------------------------------------------------------------
# Answers


def test_preflight_answer_for_a_named_origin() -> None:
    """A named origin is echoed with credentials allowed; requested headers echoed lower-case."""
    headers = preflight_headers(
        config(DJANGO),
        bucket_exists=True,
        origin="http://localhost:8000",
        method="POST",
        request_headers="Content-Type, X-Amz-Meta-Plant",
        resource_type="BUCKET",
    )
    assert headers == {
        "Access-Control-Allow-Origin": "http://localhost:8000",
        "Access-Control-Allow-Credentials": "true",
        "Vary": VARY,
        "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "content-type, x-amz-meta-plant",
        "Access-Control-Expose-Headers": "ETag",
        "Access-Control-Max-Age": "3000",
    }


def test_wildcard_origin_answers_star_without_credentials() -> None:
    """A rule allowing "*" answers "*" and never allows credentials."""
    assert response_headers(CorsRule(("GET",), ("*",)), "http://x.test") == {
        "Access-Control-Allow-Origin": "*",
        "Vary": VARY,
        "Access-Control-Allow-Methods": "GET",
    }


@pytest.mark.parametrize(
    ("cors", "exists", "origin", "method", "status", "code", "message", "extra"),
    [
        (None, True, None, "GET", 400, "BadRequest", NO_ORIGIN, {}),
        (None, False, "http://a", "GET", 403, "AccessForbidden", "CORSResponse: Bucket not found",
         {"Method": "GET", "ResourceType": "BUCKET"}),
        (None, True, "http://a", "PUT", 403, "AccessForbidden", NOT_ENABLED,
         {"Method": "PUT", "ResourceType": "OBJECT"}),
        (None, True, "http://a", None, 403, "AccessForbidden", NOT_ENABLED,
         {"Method": "OPTIONS", "ResourceType": "OBJECT"}),
        ("rules", True, "http://evil.test", "POST", 403, "AccessForbidden", NOT_ALLOWED,
         {"Method": "POST", "ResourceType": "OBJECT"}),
        ("rules", True, "http://localhost:8000", None, 403, "AccessForbidden", NOT_ALLOWED,
         {"Method": "OPTIONS", "ResourceType": "OBJECT"}),
    ],
)  # fmt: skip
def test_preflight_refusals(
    cors: str | None,
    exists: bool,
    origin: str | None,
    method: str | None,
    status: int,
    code: str,
    message: str,
    extra: dict[str, str],
) -> None:
    """No Origin: 400; unknown bucket, no configuration, no matching rule: 403 AccessForbidden."""
    with pytest.raises(S3Error) as info:
        preflight_headers(
            config(DJANGO) if cors else None,
            bucket_exists=exists,
            origin=origin,
            method=method,
            request_headers=None,
            resource_type="OBJECT",
        )
    error = info.value
    assert (error.status, error.code, error.message, error.extra) == (status, code, message, extra)


# ---------------------------------------------------------------------------
# The start-up file


def test_example_file_allows_the_local_django_origins() -> None:
    """examples/cors.json lets a Django dev server on :8000 post into the inbox and read ETag."""
    loaded = dict(load_cors_file(EXAMPLE, BUCKETS))
    inbox = loaded["plantdb-inbox"]
    for origin in ("http://localhost:8000", "http://127.0.0.1:8000"):
        rule = match_rule(inbox, origin, "POST", ["content-type"])
        assert rule is not None
        assert "ETag" in rule.expose_headers
    assert match_rule(inbox, "http://localhost:3000", "POST") is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"other-bucket": {"CORSRules": []}}', "names bucket 'other-bucket'"),
        ('{"plantdb-inbox": {"CORSRules": []}}', "bucket 'plantdb-inbox'"),
        (
            '{"plantdb-inbox": {"CORSRules": [{"AllowedOrigins": ["*"], '
            '"AllowedMethods": ["PATCH"]}]}}',
            "Unsupported method is PATCH",
        ),
    ],
)
def test_bad_start_up_file_stops_the_start(tmp_path: Path, content: str, fragment: str) -> None:
    """A file plantcdn cannot use is a ConfigError naming the problem."""
    path = tmp_path / "cors.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="PLANTCDN_CORS_CONFIG") as info:
        Config.from_environ({"PLANTCDN_CORS_CONFIG": str(path)})
    assert fragment in str(info.value)


def test_missing_start_up_file(tmp_path: Path) -> None:
    """A path that does not exist is a ConfigError too."""
    with pytest.raises(ConfigError, match="cannot read"):
        Config.from_environ({"PLANTCDN_CORS_CONFIG": str(tmp_path / "absent.json")})


def test_config_carries_the_file_rules(tmp_path: Path) -> None:
    """Config.bucket_cors holds each named bucket's parsed rules; unset: none."""
    path = tmp_path / "cors.json"
    path.write_text(json.dumps({"plantdb-inbox": {"CORSRules": [ANYONE_GETS]}}))
    got = Config.from_environ({"PLANTCDN_CORS_CONFIG": str(path)}).bucket_cors
    assert got == (("plantdb-inbox", config(ANYONE_GETS)),)
    assert Config.from_environ({}).bucket_cors == ()
