"""Bucket CORS against the real daemon: boto3's Put/Get/DeleteBucketCors, preflights,
and the rule's headers on actual responses (errors included).

Expected answers are S3's, as LocalStack records them against AWS
(``test_s3_cors.snapshot.json``).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, clean_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cors.json"
DJANGO = "http://localhost:8000"
NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the "
    "evalution of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
RULES: dict[str, Any] = {
    "CORSRules": [
        {
            "ID": "django",
            "AllowedOrigins": [DJANGO, "http://*.plants.test"],
            "AllowedMethods": ["GET", "HEAD", "POST", "PUT"],
            "AllowedHeaders": ["content-type", "x-amz-*"],
            "ExposeHeaders": ["ETag", "x-amz-request-id"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
    ]
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A daemon of this module's own: CORS changes must not leak into other tests."""
    running = RunningServer(
        tmp_path_factory.mktemp("cors-data"), clean_env({"PLANTCDN_FSYNC": "false"})
    )
    yield running
    running.stop()


@pytest.fixture
def s3(daemon: RunningServer) -> Iterator[Any]:
    """A boto3 client; the inbox's CORS configuration is removed after the test."""
    client: Any = daemon.client()
    yield client
    client.delete_bucket_cors(Bucket=INBOX)


def with_origin(client: Any, origin: str) -> Any:
    """Make *client* send ``Origin`` on every request, as a browser does."""

    def add(request: AWSRequest, **_: Any) -> None:
        request.headers["Origin"] = origin

    client.meta.events.register("before-sign.s3", add)
    return client


def raw(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    sign: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; *sign* adds a SigV4 Authorization as botocore computes it."""
    headers = dict(headers or {})
    if sign:
        request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers)
        request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
        headers = dict(request.headers.items())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def error_of(body: bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ET.fromstring(body)}


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-") or k == "vary"}


def preflight(
    server: RunningServer,
    path: str,
    origin: str | None = DJANGO,
    method: str | None = "POST",
    request_headers: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if method is not None:
        headers["Access-Control-Request-Method"] = method
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    return raw(server, "OPTIONS", path, headers)


# ---------------------------------------------------------------------------
# Put, Get, Delete


def test_get_without_configuration_is_404(s3: Any) -> None:
    """GetBucketCors on a bucket without rules: 404 NoSuchCORSConfiguration naming the bucket."""
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket=INBOX)
    response: Any = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert response["Error"]["Code"] == "NoSuchCORSConfiguration"
    assert response["Error"]["Message"] == "The CORS configuration does not exist"
    assert response["Error"]["BucketName"] == INBOX


def test_put_get_delete_round_trip(s3: Any, daemon: RunningServer) -> None:
    """put_bucket_cors stores the rules (on disk too), get returns them, delete removes them."""
    put = s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = s3.get_bucket_cors(Bucket=INBOX)
    assert got["CORSRules"] == RULES["CORSRules"]
    stored = daemon.bucket_dir(INBOX) / ".plantcdn" / "cors.json"
    assert json.loads(stored.read_text()) == RULES
    deleted = s3.delete_bucket_cors(Bucket=INBOX)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not stored.exists()
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=INBOX)
    again = s3.delete_bucket_cors(Bucket=INBOX)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_buckets_are_configured_separately(s3: Any) -> None:
    """Rules put on one bucket do not apply to the other."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket=LONGTERM)
    assert info.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_unknown_bucket(s3: Any) -> None:
    """Any CORS call on a bucket plantcdn does not serve: 404 NoSuchBucket."""
    with pytest.raises(ClientError) as info:
        s3.put_bucket_cors(Bucket="not-a-plantcdn-bucket", CORSConfiguration=RULES)
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"


def test_invalid_method_is_refused(s3: Any) -> None:
    """An unsupported method: 400 InvalidRequest in S3's words, nothing stored."""
    bad = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["MYMETHOD"]}]}
    with pytest.raises(ClientError) as info:
        s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=bad)
    response: Any = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidRequest"
    assert response["Error"]["Message"] == (
        "Found unsupported HTTP method in CORS config. Unsupported method is MYMETHOD"
    )
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=INBOX)


def cors_body() -> bytes:
    return (
        b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
        b"<AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"
        b"</CORSRule></CORSConfiguration>"
    )


def md5_header(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (cors_body(), {}, 400, "InvalidRequest"),  # no Content-MD5 or checksum
        (cors_body(), {"Content-MD5": md5_header(b"other")}, 400, "BadDigest"),
        (b"<CORSConfiguration>" + b" " * 70_000 + b"</CORSConfiguration>", None, 400,
         "MalformedXML"),
        (b'<!DOCTYPE x [<!ENTITY e "GET">]><CORSConfiguration><CORSRule><AllowedMethod>&e;'
         b"</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
         None, 400, "MalformedXML"),
        (b"<CORSConfiguration><CORSRule>", None, 400, "MalformedXML"),
    ],
)  # fmt: skip
def test_bad_put_bodies(
    s3: Any,
    daemon: RunningServer,
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    """Bodies S3 refuses (no integrity header, wrong MD5, over 64 KB, a DTD, not XML)."""
    sent = {"Content-MD5": md5_header(body)} if headers is None else headers
    got_status, _, answer = raw(daemon, "PUT", f"/{INBOX}?cors", sent, body, sign=True)
    assert (got_status, error_of(answer)["Code"]) == (status, code), answer
    assert not (daemon.bucket_dir(INBOX) / ".plantcdn" / "cors.json").exists()


def test_put_needs_a_signature(daemon: RunningServer) -> None:
    """An unsigned PutBucketCors: 403 AccessDenied, nothing stored."""
    body = cors_body()
    status, _, answer = raw(
        daemon, "PUT", f"/{INBOX}?cors", {"Content-MD5": md5_header(body)}, body
    )
    assert (status, error_of(answer)["Code"]) == (403, "AccessDenied")
    assert not (daemon.bucket_dir(INBOX) / ".plantcdn" / "cors.json").exists()


def test_configuration_survives_a_restart(tmp_path: Path) -> None:
    """Rules put at run time are still there after the daemon restarts on the same folder."""
    data = tmp_path / "data"
    data.mkdir()
    first = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    try:
        first.client().put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)  # type: ignore[attr-defined]
    finally:
        first.stop()
    second = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    try:
        got = second.client().get_bucket_cors(Bucket=INBOX)  # type: ignore[attr-defined]
        assert got["CORSRules"] == RULES["CORSRules"]
        assert preflight(second, f"/{INBOX}", origin="http://a.plants.test")[0] == 200
    finally:
        second.stop()


def test_start_up_file_applies_to_the_buckets_it_names(
    start_server: Callable[..., RunningServer],
) -> None:
    """PLANTCDN_CORS_CONFIG=examples/cors.json: both buckets answer with the example's rules."""
    server = start_server(PLANTCDN_CORS_CONFIG=str(EXAMPLE))
    example = json.loads(EXAMPLE.read_text())
    client: Any = server.client()
    assert client.get_bucket_cors(Bucket=INBOX)["CORSRules"] == example[INBOX]["CORSRules"]
    assert client.get_bucket_cors(Bucket=LONGTERM)["CORSRules"] == example[LONGTERM]["CORSRules"]
    status, headers, _ = preflight(server, f"/{INBOX}", origin="http://127.0.0.1:8000")
    assert status == 200
    assert headers["access-control-allow-origin"] == "http://127.0.0.1:8000"


def test_bad_start_up_file_refuses_to_start(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """A CORS file with an unknown bucket stops the start with a message naming it."""
    path = tmp_path / "cors.json"
    path.write_text('{"photos": {"CORSRules": []}}')
    with pytest.raises(RuntimeError, match="names bucket 'photos'"):
        start_server(PLANTCDN_CORS_CONFIG=str(path))


# ---------------------------------------------------------------------------
# Preflight


def test_preflight_without_origin_is_400(daemon: RunningServer) -> None:
    """OPTIONS without Origin: 400 BadRequest, as S3."""
    status, _, body = preflight(daemon, f"/{INBOX}/company_1/plant_1/a.png", origin=None)
    assert status == 400
    error = error_of(body)
    assert error["Code"] == "BadRequest"
    assert error["Message"] == "Insufficient information. Origin request header needed."


def test_preflight_without_configuration_is_403(s3: Any, daemon: RunningServer) -> None:
    """OPTIONS on a bucket without rules: 403 AccessForbidden naming method and resource type."""
    status, headers, body = preflight(daemon, f"/{INBOX}", method="PUT")
    assert status == 403
    error = error_of(body)
    assert error["Code"] == "AccessForbidden"
    assert error["Message"] == "CORSResponse: CORS is not enabled for this bucket."
    assert (error["Method"], error["ResourceType"]) == ("PUT", "BUCKET")
    assert not cors_headers(headers)


@pytest.mark.parametrize(
    ("origin", "method", "request_headers", "expected_method"),
    [
        ("http://evil.test", "POST", None, "POST"),  # origin no rule names
        (DJANGO, "DELETE", None, "DELETE"),  # method no rule allows
        (DJANGO, "POST", "authorization", "POST"),  # header rule 1 does not allow
        (DJANGO, None, None, "OPTIONS"),  # no method asked for
    ],
)
def test_preflight_not_allowed_is_403(
    s3: Any,
    daemon: RunningServer,
    origin: str,
    method: str | None,
    request_headers: str | None,
    expected_method: str,
) -> None:
    """No rule matches: 403 AccessForbidden with S3's message, no CORS headers."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    status, headers, body = preflight(
        daemon, f"/{INBOX}/company_1/plant_1/a.png", origin, method, request_headers
    )
    assert status == 403
    error = error_of(body)
    assert error["Code"] == "AccessForbidden"
    assert error["Message"] == NOT_ALLOWED
    assert (error["Method"], error["ResourceType"]) == (expected_method, "OBJECT")
    assert not cors_headers(headers)


def test_preflight_allowed(s3: Any, daemon: RunningServer) -> None:
    """A matching preflight: 200, empty, with the rule's headers."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    status, headers, body = preflight(
        daemon, f"/{INBOX}", "http://shop.plants.test", "POST", "Content-Type, X-Amz-Date"
    )
    assert (status, body) == (200, b"")
    assert cors_headers(headers) == {
        "access-control-allow-origin": "http://shop.plants.test",
        "access-control-allow-credentials": "true",
        "vary": VARY,
        "access-control-allow-methods": "GET, HEAD, POST, PUT",
        "access-control-allow-headers": "content-type, x-amz-date",
        "access-control-expose-headers": "ETag, x-amz-request-id",
        "access-control-max-age": "600",
    }
    assert headers["content-length"] == "0"
    assert headers["x-amz-request-id"]


def test_preflight_virtual_hosted(s3: Any, daemon: RunningServer) -> None:
    """OPTIONS with Host {bucket}.localhost is the bucket's preflight too."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    status, headers, _ = raw(
        daemon,
        "OPTIONS",
        "/company_1/plant_1/a.png",
        {
            "Host": f"{INBOX}.localhost:{daemon.port}",
            "Origin": "http://anything.test",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers


# ---------------------------------------------------------------------------
# Actual responses


def test_actual_responses_carry_the_rule_headers(s3: Any, daemon: RunningServer) -> None:
    """PUT, GET and HEAD with an allowed Origin carry the matching rule's headers."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    browser = with_origin(daemon.client(), DJANGO)
    key = "company_1/plant_1/cors.txt"
    put = browser.put_object(Bucket=INBOX, Key=key, Body=b"hello")
    got = browser.get_object(Bucket=INBOX, Key=key)
    head = browser.head_object(Bucket=INBOX, Key=key)
    for response in (put, got, head):
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        assert cors_headers(headers) == {
            "access-control-allow-origin": DJANGO,
            "access-control-allow-credentials": "true",
            "vary": VARY,
            "access-control-allow-methods": "GET, HEAD, POST, PUT",
            "access-control-expose-headers": "ETag, x-amz-request-id",
            "access-control-max-age": "600",
        }
    assert got["Body"].read() == b"hello"


def test_no_origin_or_unmatched_origin_gets_no_cors_headers(s3: Any, daemon: RunningServer) -> None:
    """Without Origin, or with one no rule allows for the method, S3 adds nothing."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    key = "company_1/plant_1/plain.txt"
    put = s3.put_object(Bucket=INBOX, Key=key, Body=b"x")
    assert not cors_headers(put["ResponseMetadata"]["HTTPHeaders"])
    stranger = with_origin(daemon.client(), "http://evil.test")
    put = stranger.put_object(Bucket=INBOX, Key=key, Body=b"y")
    assert not cors_headers(put["ResponseMetadata"]["HTTPHeaders"])
    got = stranger.get_object(Bucket=INBOX, Key=key)  # rule 2: anyone may GET
    assert cors_headers(got["ResponseMetadata"]["HTTPHeaders"]) == {
        "access-control-allow-origin": "*",
        "vary": VARY,
        "access-control-allow-methods": "GET",
    }


def test_errors_carry_the_rule_headers(s3: Any, daemon: RunningServer) -> None:
    """An S3 error to an allowed origin carries the CORS headers, so the page can read it."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    status, headers, body = raw(
        daemon, "GET", f"/{INBOX}/company_1/plant_1/missing.txt", {"Origin": DJANGO}
    )
    assert status == 403
    assert error_of(body)["Code"] == "AccessDenied"
    assert headers["access-control-allow-origin"] == DJANGO
    assert headers["access-control-expose-headers"] == "ETag, x-amz-request-id"


def test_no_configuration_no_headers(s3: Any, daemon: RunningServer) -> None:
    """A bucket without rules never adds CORS headers to actual responses."""
    browser = with_origin(daemon.client(), DJANGO)
    put = browser.put_object(Bucket=INBOX, Key="company_1/plant_1/n.txt", Body=b"x")
    assert not cors_headers(put["ResponseMetadata"]["HTTPHeaders"])


def test_changes_apply_at_once(s3: Any, daemon: RunningServer) -> None:
    """A new configuration is used by the very next request; a deleted one no longer is."""
    assert preflight(daemon, f"/{INBOX}", method="GET")[0] == 403
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    assert preflight(daemon, f"/{INBOX}", method="GET")[0] == 200
    narrower = {"CORSRules": [{"AllowedOrigins": ["http://other.test"], "AllowedMethods": ["GET"]}]}
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=narrower)
    assert preflight(daemon, f"/{INBOX}", method="GET")[0] == 403
    s3.delete_bucket_cors(Bucket=INBOX)
    status, _, body = preflight(daemon, f"/{INBOX}", method="GET")
    assert status == 403
    assert error_of(body)["Message"] == "CORSResponse: CORS is not enabled for this bucket."


def test_refused_browser_post_carries_the_rule_headers(s3: Any, daemon: RunningServer) -> None:
    """A POST refused by its policy still tells an allowed page why (S3 adds CORS to errors)."""
    s3.put_bucket_cors(Bucket=INBOX, CORSConfiguration=RULES)
    form = daemon.client().generate_presigned_post(  # type: ignore[attr-defined]
        INBOX, "company_1/plant_1/late.png", ExpiresIn=-60
    )["fields"]
    boundary = "plantcdnBoundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in form.items()
    ]
    body = (
        "".join(parts)
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        + f"png\r\n--{boundary}--\r\n"
    ).encode()
    status, headers, answer = raw(
        daemon,
        "POST",
        f"/{INBOX}",
        {"Origin": DJANGO, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        body,
    )
    assert (status, error_of(answer)["Code"]) == (403, "AccessDenied")
    assert headers.get("access-control-allow-origin") == DJANGO
