"""POST policy signature and evaluation, driven by boto3's generate_presigned_post.

No reactor, no network: boto3 only signs (its endpoint is an unused port).
Refusals are one mutation of a valid form each, checked for status, code and
message as S3 sends them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.postpolicy import (
    EXEMPT_FIELDS,
    PolicyVerdict,
    PostAuth,
    decode_policy,
    evaluate_policy,
    substitute_filename,
    verify_post_signature,
)

REGION = "us-east-1"
BUCKET = "plantdb-inbox"
AKID = "AKIAPLANTCDNTEST0001"
SECRET = "plantcdn/test+secret/0123456789abcdefghij"
CREDENTIALS = {AKID: Credential(AKID, SECRET)}


def _client(signature_version: str, secret: str = SECRET, akid: str = AKID) -> Any:
    return boto3.client(
        "s3",
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        endpoint_url="http://127.0.0.1:9",
        config=BotoConfig(signature_version=signature_version),
    )


def presigned(
    *,
    key: str = "uploads/${filename}",
    fields: Mapping[str, str] | None = None,
    conditions: list[Any] | None = None,
    signature_version: str = "s3v4",
    secret: str = SECRET,
    akid: str = AKID,
    expires_in: int = 3600,
) -> dict[str, str]:
    """Form fields as boto3 hands them to a browser, names lower-cased as the reader gives them."""
    post = _client(signature_version, secret, akid).generate_presigned_post(
        BUCKET,
        key,
        Fields=dict(fields or {}),
        Conditions=list(conditions or []),
        ExpiresIn=expires_in,
    )
    return {name.lower(): value for name, value in post["fields"].items()}


#: A browser form of the kind the brief describes: key prefix, size range,
#: success status, type and user metadata.
RICH_FIELDS = {
    "Content-Type": "image/png",
    "success_action_status": "201",
    "x-amz-meta-plant": "monstera",
}
RICH_CONDITIONS: list[Any] = [
    ["content-length-range", 1, 10 * 1024 * 1024],
    {"success_action_status": "201"},
    ["starts-with", "$Content-Type", "image/"],
    ["starts-with", "$x-amz-meta-plant", ""],
]


def rich_form(**overrides: Any) -> dict[str, str]:
    options: dict[str, Any] = {"fields": RICH_FIELDS, "conditions": RICH_CONDITIONS}
    options.update(overrides)
    return presigned(**options)


def verify(fields: Mapping[str, str], now: float | None = None) -> PostAuth:
    return verify_post_signature(
        fields, CREDENTIALS, now=time.time() if now is None else now, region=REGION
    )


def evaluate(fields: Mapping[str, str], *, bucket: str = BUCKET, now: float | None = None):
    return evaluate_policy(
        decode_policy(fields["policy"]),
        fields,
        bucket=bucket,
        now=time.time() if now is None else now,
    )


def refusal(call: Any, *args: Any, **kwargs: Any) -> S3Error:
    with pytest.raises(S3Error) as info:
        call(*args, **kwargs)
    return info.value


def b64(document: Any) -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def sigv2_form(policy: Mapping[str, Any], extra: Mapping[str, str], secret: str = SECRET):
    """A legacy form built by hand per "HTML Forms (AWS Signature Version 2)"."""
    policy_b64 = b64(policy)
    signature = base64.b64encode(
        hmac.new(secret.encode(), policy_b64.encode(), hashlib.sha1).digest()
    ).decode()
    fields = {name.lower(): value for name, value in extra.items()}
    fields.update({"awsaccesskeyid": AKID, "policy": policy_b64, "signature": signature})
    return fields


def future(seconds: int = 3600) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------
# Forms that S3 accepts


def test_aws_published_sigv4_post_example_verifies_and_evaluates() -> None:
    """The "Example: Browser-Based Upload using HTTP POST" vector is accepted as S3 accepts it."""
    policy = (
        "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgI"
        "CB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidX"
        "Nlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmV"
        "kaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBs"
        "b2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAge"
        "yJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3"
        "J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQo"
        "NCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0x"
        "L3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNC"
        "iAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9"
    )
    form = {
        "key": "user/user1/${filename}",
        "acl": "public-read",
        "success_action_redirect": "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
        "content-type": "image/jpeg",
        "x-amz-meta-uuid": "14365123651274",
        "x-amz-server-side-encryption": "AES256",
        "x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-date": "20151229T000000Z",
        "x-amz-meta-tag": "",
        "policy": policy,
        "x-amz-signature": "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e",
    }
    example = {
        "AKIAIOSFODNN7EXAMPLE": Credential(
            "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        )
    }
    now = datetime(2015, 12, 29, 12, tzinfo=UTC).timestamp()
    auth = verify_post_signature(form, example, now=now, region="us-east-1")
    assert auth == PostAuth("AKIAIOSFODNN7EXAMPLE", "v4")
    verdict = evaluate_policy(decode_policy(policy), form, bucket="sigv4examplebucket", now=now)
    assert verdict == PolicyVerdict(None, None)


def test_boto3_sigv4_form_with_prefix_range_status_type_and_metadata_is_accepted() -> None:
    """A boto3 SigV4 form verifies, evaluates and yields its content-length-range."""
    form = rich_form()
    assert verify(form) == PostAuth(AKID, "v4")
    assert evaluate(form) == PolicyVerdict(min_length=1, max_length=10 * 1024 * 1024)


def test_boto3_sigv2_form_is_accepted() -> None:
    """botocore's legacy (signature_version "s3") form verifies as SigV2."""
    form = rich_form(signature_version="s3")
    assert {"awsaccesskeyid", "signature", "policy"} <= form.keys()
    assert verify(form) == PostAuth(AKID, "v2")
    assert evaluate(form) == PolicyVerdict(1, 10 * 1024 * 1024)


def test_hand_built_sigv2_form_is_accepted() -> None:
    """A SigV2 form signed per the HTML Forms page verifies and evaluates."""
    policy = {
        "expiration": future(),
        "conditions": [
            {"bucket": BUCKET},
            ["starts-with", "$key", "user/eric/"],
            {"acl": "private"},
        ],
    }
    form = sigv2_form(policy, {"key": "user/eric/${filename}", "acl": "private"})
    assert verify(form) == PostAuth(AKID, "v2")
    assert evaluate(form) == PolicyVerdict(None, None)


def test_key_with_filename_variable_is_matched_before_substitution() -> None:
    """An exact {"key": "uploads/${filename}"} condition (aws-sdk-ruby style) holds."""
    policy = {"expiration": future(), "conditions": [{"bucket": BUCKET}, {"key": "u/${filename}"}]}
    form = sigv2_form(policy, {"key": "u/${filename}"})
    evaluate(form)


def test_condition_field_names_are_case_insensitive() -> None:
    """["eq", "$CONTENT-type", ...] covers and checks the content-type field."""
    policy = {
        "expiration": future(),
        "conditions": [{"BUCKET": BUCKET}, ["eq", "$KEY", "k"], ["eq", "$CONTENT-type", "a/b"]],
    }
    evaluate(sigv2_form(policy, {"key": "k", "Content-Type": "a/b"}))


def test_content_type_list_passes_when_every_element_has_the_prefix() -> None:
    """starts-with on Content-Type applies to each element of a comma-separated list."""
    policy = {
        "expiration": future(),
        "conditions": [["starts-with", "$key", ""], ["starts-with", "$Content-Type", "image/"]],
    }
    evaluate(sigv2_form(policy, {"key": "k", "content-type": "image/jpeg, image/png"}))
    error = refusal(evaluate, sigv2_form(policy, {"key": "k", "content-type": "image/png,text/x"}))
    assert error.message == (
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$Content-Type", '
        '"image/"]'
    )


def test_x_ignore_fields_need_no_condition() -> None:
    """Fields prefixed x-ignore- are exempt from coverage."""
    policy = {"expiration": future(), "conditions": [["starts-with", "$key", ""]]}
    evaluate(sigv2_form(policy, {"key": "k", "x-ignore-flash-filename": "a.swf"}))


def test_ranges_intersect() -> None:
    """Two content-length-range conditions bound the size by both."""
    policy = {
        "expiration": future(),
        "conditions": [
            ["starts-with", "$key", ""],
            ["content-length-range", 10, 100],
            ["content-length-range", "20", "1000"],
        ],
    }
    assert evaluate(sigv2_form(policy, {"key": "k"})) == PolicyVerdict(20, 100)


def test_verdict_check_size_raises_s3_entity_errors() -> None:
    """Sizes outside the range give EntityTooLarge / EntityTooSmall with S3's extra elements."""
    verdict = PolicyVerdict(min_length=5, max_length=10)
    verdict.check_size(3, complete=False)
    verdict.check_size(10, complete=True)
    large = refusal(verdict.check_size, 11, complete=False)
    assert (large.status, large.code) == (400, "EntityTooLarge")
    assert large.extra == {"ProposedSize": "11", "MaxSizeAllowed": "10"}
    small = refusal(verdict.check_size, 4, complete=True)
    assert (small.status, small.code) == (400, "EntityTooSmall")
    assert small.extra == {"ProposedSize": "4", "MinSizeAllowed": "5"}


@pytest.mark.parametrize(
    ("value", "filename", "expected"),
    [
        ("uploads/${filename}", "lolcatz.jpg", "uploads/lolcatz.jpg"),
        ("${filename}", "C:\\Program Files\\directory1\\file.txt", "file.txt"),
        ("a/${filename}/${filename}", "dir/x.png", "a/x.png/x.png"),
        ("uploads/${filename}", "", "uploads/"),
        ("plain", "x", "plain"),
    ],
)
def test_substitute_filename_uses_the_base_name(value: str, filename: str, expected: str) -> None:
    """${filename} becomes the text after the last / or \\ of the client's file name."""
    assert substitute_filename(value, filename) == expected


# --------------------------------------------------------------------------
# One mutation each: signature


def _assert(error: S3Error, status: int, code: str, message: str | None = None) -> None:
    assert (error.status, error.code) == (status, code)
    if message is not None:
        assert error.message == message


def test_tampered_policy_is_signature_does_not_match() -> None:
    """Changing one character of the policy breaks the SigV4 signature."""
    form = rich_form()
    form["policy"] = (
        form["policy"][:-3] + ("A" if form["policy"][-3] != "A" else "B") + form["policy"][-2:]
    )
    error = refusal(verify, form)
    _assert(error, 403, "SignatureDoesNotMatch")
    assert error.extra["AWSAccessKeyId"] == AKID
    assert error.extra["StringToSign"] == form["policy"]


def test_wrong_secret_is_signature_does_not_match() -> None:
    """A form signed with another secret for the same key id is refused."""
    _assert(refusal(verify, rich_form(secret="not-the-secret")), 403, "SignatureDoesNotMatch")


def test_wrong_secret_sigv2_is_signature_does_not_match() -> None:
    """A SigV2 form signed with another secret is refused."""
    form = rich_form(signature_version="s3", secret="not-the-secret")
    _assert(refusal(verify, form), 403, "SignatureDoesNotMatch")


def test_tampered_sigv2_signature_is_signature_does_not_match() -> None:
    """A SigV2 form whose signature field was altered is refused."""
    form = rich_form(signature_version="s3")
    form["signature"] = base64.b64encode(b"\0" * 20).decode()
    _assert(refusal(verify, form), 403, "SignatureDoesNotMatch")


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_unknown_access_key_is_invalid_access_key_id(signature_version: str) -> None:
    """A key id plantcdn does not know is 403 InvalidAccessKeyId naming it."""
    form = rich_form(signature_version=signature_version, akid="AKIAUNKNOWNUNKNOWN00")
    error = refusal(verify, form)
    _assert(error, 403, "InvalidAccessKeyId")
    assert error.extra == {"AWSAccessKeyId": "AKIAUNKNOWNUNKNOWN00"}


@pytest.mark.parametrize(
    ("field", "spelling"),
    [
        ("policy", "Policy"),
        ("x-amz-algorithm", "X-Amz-Algorithm"),
        ("x-amz-credential", "X-Amz-Credential"),
        ("x-amz-date", "X-Amz-Date"),
        ("x-amz-signature", "X-Amz-Signature"),
    ],
)
def test_missing_sigv4_field_is_invalid_argument_naming_it(field: str, spelling: str) -> None:
    """Dropping one SigV4 field is 400 InvalidArgument in S3's words, with ArgumentName."""
    form = rich_form()
    del form[field]
    error = refusal(verify, form)
    _assert(
        error,
        400,
        "InvalidArgument",
        f"Bucket POST must contain a field named '{spelling}'.  "
        "If it is specified, please check the order of the fields.",
    )
    assert error.extra == {"ArgumentName": spelling, "ArgumentValue": ""}


@pytest.mark.parametrize(
    ("field", "spelling"),
    [("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature"), ("policy", "Policy")],
)
def test_missing_sigv2_field_is_invalid_argument_naming_it(field: str, spelling: str) -> None:
    """Dropping one SigV2 field is 400 InvalidArgument naming it as S3 does."""
    form = rich_form(signature_version="s3")
    del form[field]
    error = refusal(verify, form)
    _assert(error, 400, "InvalidArgument")
    assert error.message.startswith(f"Bucket POST must contain a field named '{spelling}'.")
    assert error.extra["ArgumentName"] == spelling


def test_missing_key_is_invalid_argument() -> None:
    """A form without a key field is refused before its signature is looked at."""
    form = rich_form()
    del form["key"]
    error = refusal(verify, form)
    _assert(error, 400, "InvalidArgument")
    assert error.extra == {"ArgumentName": "key", "ArgumentValue": ""}


@pytest.mark.parametrize("keep", [(), ("policy",)])
def test_form_without_signature_fields_is_access_denied(keep: tuple[str, ...]) -> None:
    """An anonymous form (no signing fields, with or without a policy) is 403 AccessDenied."""
    form = {name: value for name, value in rich_form().items() if name in ("key", *keep)}
    _assert(refusal(verify, form), 403, "AccessDenied", "Access Denied")


def test_credential_for_another_region_is_authorization_header_malformed() -> None:
    """A credential scope naming another region is refused naming the expected one."""
    form = rich_form()
    form["x-amz-credential"] = form["x-amz-credential"].replace(REGION, "eu-west-1")
    error = refusal(verify, form)
    _assert(
        error,
        400,
        "AuthorizationHeaderMalformed",
        "The authorization header is malformed; the region 'eu-west-1' is wrong; "
        "expecting 'us-east-1'",
    )
    assert error.extra == {"Region": REGION}


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        (
            "garbage",
            'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
            'aws4_request".',
        ),
        (
            f"{AKID}/2015-12-29/{REGION}/s3/aws4_request",
            'incorrect date format "2015-12-29". This date in the credential must be in the '
            'format "yyyyMMdd".',
        ),
        (
            f"{AKID}/20151229/{REGION}/ec2/aws4_request",
            'incorrect service "ec2". This endpoint belongs to "s3".',
        ),
        (
            f"{AKID}/20151229/{REGION}/s3/aws5_request",
            'incorrect terminal "aws5_request". This endpoint uses "aws4_request".',
        ),
    ],
)
def test_malformed_credential_is_invalid_argument(credential: str, message: str) -> None:
    """Credential scopes S3 cannot parse are 400 InvalidArgument in S3's words."""
    form = rich_form()
    form["x-amz-credential"] = credential
    _assert(refusal(verify, form), 400, "InvalidArgument", message)


def test_other_algorithm_is_refused() -> None:
    """Only AWS4-HMAC-SHA256 signs a SigV4 form."""
    form = rich_form()
    form["x-amz-algorithm"] = "AWS4-HMAC-SHA512"
    _assert(refusal(verify, form), 400, "InvalidArgument")


def test_malformed_amz_date_is_access_denied() -> None:
    """An x-amz-date that is not ISO 8601 basic is refused as S3 refuses a bad date."""
    form = rich_form()
    form["x-amz-date"] = "yesterday"
    _assert(refusal(verify, form), 403, "AccessDenied")


# --------------------------------------------------------------------------
# One mutation each: policy


def test_expired_policy_is_access_denied() -> None:
    """A policy evaluated after its expiration is 403 "Policy expired."."""
    form = rich_form()
    later = time.time() + 3601
    _assert(
        refusal(evaluate, form, now=later),
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    )


def test_extra_field_is_access_denied_naming_it() -> None:
    """A field no condition names is 403 "Extra input fields: <name>"."""
    form = rich_form()
    form["x-amz-meta-extra"] = "1"
    _assert(
        refusal(evaluate, form),
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: x-amz-meta-extra",
    )


def test_failed_eq_object_condition_is_quoted_as_eq() -> None:
    """A failed {"field": "value"} condition is quoted as ["eq", "$field", "value"]."""
    form = rich_form()
    form["success_action_status"] = "200"
    _assert(
        refusal(evaluate, form),
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["eq", "$success_action_status", '
        '"201"]',
    )


def test_failed_eq_list_condition_is_quoted_as_written() -> None:
    """A failed ["eq", ...] condition is quoted as the policy document spells it."""
    form = rich_form(
        fields={**RICH_FIELDS, "acl": "private"},
        conditions=[*RICH_CONDITIONS, ["eq", "$acl", "private"]],
    )
    form["acl"] = "public-read"
    _assert(
        refusal(evaluate, form),
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["eq", "$acl", "private"]',
    )


def test_failed_starts_with_on_key_is_access_denied() -> None:
    """A key outside the signed prefix fails the starts-with condition."""
    form = rich_form()
    form["key"] = "elsewhere/${filename}"
    _assert(
        refusal(evaluate, form),
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "uploads/"]',
    )


def test_wrong_bucket_fails_the_bucket_condition() -> None:
    """The bucket condition is checked against the bucket the request addresses."""
    _assert(
        refusal(evaluate, rich_form(), bucket="plantdb-longterm"),
        403,
        "AccessDenied",
        f'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "{BUCKET}"]',
    )


def test_condition_on_absent_field_fails() -> None:
    """A condition naming a field the form does not carry fails, even starts-with ""."""
    form = rich_form()
    del form["x-amz-meta-plant"]
    _assert(
        refusal(evaluate, form),
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", '
        '"$x-amz-meta-plant", ""]',
    )


def test_condition_field_without_dollar_fails() -> None:
    """["eq", "acl", ...] (no $) parses but never holds."""
    policy = {
        "expiration": future(),
        "conditions": [["starts-with", "$key", ""], ["eq", "acl", "x"]],
    }
    error = refusal(evaluate, sigv2_form(policy, {"key": "k"}))
    assert (
        error.message == 'Invalid according to Policy: Policy Condition failed: ["eq", "acl", "x"]'
    )


def test_non_numeric_quoted_range_fails_as_a_condition() -> None:
    """["content-length-range", "a", "9"] parses, then fails as a condition."""
    policy = {
        "expiration": future(),
        "conditions": [["starts-with", "$key", ""], ["content-length-range", "a", "9"]],
    }
    _assert(refusal(evaluate, sigv2_form(policy, {"key": "k"})), 403, "AccessDenied")


@pytest.mark.parametrize(
    ("policy_b64", "message"),
    [
        ("", "Invalid Policy: Expecting '{' but found End-of-Input"),
        ("not*base64!", "Invalid Policy: invalid Base64 encoding."),
        (b64("invalid json"), "Invalid Policy: Invalid JSON."),
        (b64("[1, 2]"), "Invalid Policy: Invalid JSON."),
        (b64({"conditions": []}), "Invalid Policy: Policy missing expiration."),
        (b64({"expiration": True, "conditions": []}), "Invalid Policy: Invalid JSON."),
        (
            b64({"expiration": "invalid", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: 'invalid'",
        ),
        (
            b64({"expiration": "2016-04-28T23:31:36.798044", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '2016-04-28T23:31:36.798044'",
        ),
        (
            b64({"expiration": "2016-02-30T00:00:00Z", "conditions": []}),
            "Invalid Policy: Invalid 'expiration' value: '2016-02-30T00:00:00Z'",
        ),
        (b64({"expiration": "2144-11-08T04:19:33Z"}), "Invalid Policy: Policy missing conditions."),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": True}),
            "Invalid Policy: Invalid 'conditions' value: must be a List.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [True]}),
            "Invalid Policy: Invalid condition test: must be a List or Object.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [[]]}),
            "Invalid Policy: Invalid Condition: missing operation identifier.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [["in", "$a", "b"]]}),
            "Invalid Policy: Invalid Condition: unknown operation 'in'.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [["eq", "$a", "b", "c"]]}),
            "Invalid Policy: Invalid eq: wrong number of arguments.",
        ),
        (
            b64(
                {"expiration": "2144-11-08T04:19:33Z", "conditions": [["content-length-range", 1]]}
            ),
            "Invalid Policy: Invalid content-length-range: wrong number of arguments.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [["eq", False, "b"]]}),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [["eq", "$a", True]]}),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            b64(
                {
                    "expiration": "2144-11-08T04:19:33Z",
                    "conditions": [["content-length-range", 1, False]],
                }
            ),
            "Invalid Policy: Invalid JSON.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [{"a": "1", "b": "2"}]}),
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one "
            "property specified.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [{"a": True}]}),
            "Invalid Policy: Invalid Simple-Condition: value must be a string.",
        ),
        (
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": [], "extra": "field"}),
            'Invalid Policy: Unexpected: "extra"',
        ),
    ],
)
def test_malformed_policy_is_invalid_policy_document(policy_b64: str, message: str) -> None:
    """A policy S3 cannot read is 400 InvalidPolicyDocument with S3's "Invalid Policy" text."""
    _assert(refusal(decode_policy, policy_b64), 400, "InvalidPolicyDocument", message)


def test_policy_with_wrapped_base64_decodes() -> None:
    """Base64 wrapped at 76 columns (older SDKs) decodes."""
    text = b64({"expiration": "2144-11-08T04:19:33.000Z", "conditions": [["eq", "$key", "k"]]})
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    policy = decode_policy(wrapped)
    assert policy.expiration == datetime(2144, 11, 8, 4, 19, 33, tzinfo=UTC)
    assert [c.text for c in policy.conditions] == ['["eq", "$key", "k"]']


# --------------------------------------------------------------------------
# Properties

_NAMES = st.sampled_from(
    [
        "key",
        "acl",
        "content-type",
        "Content-Type",
        "x-amz-meta-a",
        "x-ignore-z",
        "policy",
        "file",
        "bucket",
        "success_action_status",
        "x-amz-signature",
        "",
    ]
)
_SHORT = st.text(alphabet="ab/,${}", max_size=4)
_JSON_SCALARS = st.none() | st.booleans() | st.integers(-5, 50) | _SHORT | _NAMES.map("$".__add__)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES | _SHORT, inner, max_size=3),
    max_leaves=12,
)
_CONDITION = st.one_of(
    st.dictionaries(_NAMES, _SHORT, min_size=1, max_size=1),
    st.tuples(st.sampled_from(["eq", "starts-with"]), _NAMES.map("$".__add__), _SHORT).map(list),
    st.tuples(
        st.just("content-length-range"),
        st.integers(-1, 20) | st.just("7"),
        st.integers(-1, 20),
    ).map(list),
    _JSON,
)
_FIELDS = st.dictionaries(_NAMES.map(str.lower), _SHORT, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    document=st.one_of(
        st.fixed_dictionaries(
            {
                "expiration": st.sampled_from(["2144-11-08T04:19:33Z", "2001-01-01T00:00:00.5Z"])
                | _JSON,
                "conditions": st.lists(_CONDITION, max_size=5) | _JSON,
            }
        ),
        _JSON,
    ),
    fields=_FIELDS,
    bucket=_SHORT,
)
def test_policy_evaluation_never_raises_anything_but_s3_error(
    document: Any, fields: dict[str, str], bucket: str
) -> None:
    """Whatever the policy document and form, the outcome is a verdict or an S3Error."""
    try:
        evaluate_policy(decode_policy(b64(document)), fields, bucket=bucket, now=time.time())
    except S3Error as error:
        assert error.code in ("InvalidPolicyDocument", "AccessDenied")


@settings(max_examples=400, deadline=None)
@given(conditions=st.lists(_CONDITION, max_size=6), fields=_FIELDS, bucket=_SHORT)
def test_policy_never_accepts_fields_it_does_not_cover(
    conditions: list[Any], fields: dict[str, str], bucket: str
) -> None:
    """An accepted form has every non-exempt field named by a condition, every eq held."""
    try:
        policy = decode_policy(
            b64({"expiration": "2144-11-08T04:19:33Z", "conditions": conditions})
        )
        evaluate_policy(policy, fields, bucket=bucket, now=time.time())
    except S3Error:
        return
    named = {c.field for c in policy.conditions if c.field is not None}
    for name in fields:
        assert name in EXEMPT_FIELDS or name.startswith("x-ignore-") or name in named
    for condition in policy.conditions:
        if condition.op == "eq":
            assert condition.field is not None
            actual = bucket if condition.field == "bucket" else fields[condition.field]
            assert actual == condition.value
        elif condition.op == "starts-with":
            assert condition.field is not None
            actual = bucket if condition.field == "bucket" else fields[condition.field]
            parts = actual.split(",") if condition.field == "content-type" else [actual]
            assert all(part.strip().startswith(condition.value) for part in parts)


_FORM_NAMES = st.sampled_from(
    ["key", "acl", "Content-Type", "x-amz-meta-a", "success_action_status"]
)


@settings(max_examples=200, deadline=None)
@given(
    wanted=st.dictionaries(
        _FORM_NAMES, st.tuples(st.sampled_from(["eq", "starts-with", "object"]), _SHORT, _SHORT)
    ),
    ignored=st.dictionaries(_SHORT.map("x-ignore-".__add__), _SHORT),
)
def test_policy_accepts_every_form_that_meets_it(
    wanted: dict[str, tuple[str, str, str]], ignored: dict[str, str]
) -> None:
    """A form built to satisfy each condition (plus x-ignore- fields) is always accepted."""
    conditions: list[Any] = [{"bucket": BUCKET}]
    fields: dict[str, str] = dict(ignored)
    for name, (op, value, suffix) in wanted.items():
        if op == "object":
            conditions.append({name: value})
            fields[name.lower()] = value
        elif op == "eq":
            conditions.append(["eq", "$" + name, value])
            fields[name.lower()] = value
        else:
            # A comma in a Content-Type value makes a list; keep this form a single type.
            value = value.replace(",", "")
            conditions.append(["starts-with", "$" + name, value])
            fields[name.lower()] = value + suffix.replace(",", "")
    policy = decode_policy(b64({"expiration": "2144-11-08T04:19:33Z", "conditions": conditions}))
    assert evaluate_policy(policy, fields, bucket=BUCKET, now=time.time()) == PolicyVerdict(
        None, None
    )
