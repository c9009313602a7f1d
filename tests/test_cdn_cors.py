"""CORS on ``/cdn`` from a configured response headers policy, and its pure rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import RunningServer, clean_env
from test_cdn_support import fetch, put

from plantcdn.cdncors import CorsPolicy, cors_headers, origin_allowed, preflight_headers

APP = "https://app.plantdb.example"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("cors-data")
    running = RunningServer(
        data,
        clean_env(
            {
                "PLANTCDN_FSYNC": "false",
                "PLANTCDN_CDN_CORS_ORIGINS": f"{APP}, https://*.plantdb.test",
                "PLANTCDN_CDN_CORS_HEADERS": "Range, If-None-Match",
                "PLANTCDN_CDN_CORS_EXPOSE": "ETag, Content-Length, X-Cache",
                "PLANTCDN_CDN_CORS_MAX_AGE": "600",
                "PLANTCDN_CDN_CORS_CREDENTIALS": "true",
            }
        ),
    )
    try:
        put(running, "company_5/plant_5/photo.webp", b"PHOTO", ContentType="image/webp")
        yield running
    finally:
        running.stop()


PATH = "/cdn/company_5/plant_5/photo.webp"


def test_get_from_an_allowed_origin_carries_cors_headers(cors_server: RunningServer) -> None:
    """The page's own origin is echoed, with credentials and exposed headers."""
    reply = fetch(cors_server, PATH, headers={"Origin": APP})
    assert reply.status == 200
    assert reply.header("access-control-allow-origin") == APP
    assert reply.header("access-control-allow-credentials") == "true"
    assert reply.header("access-control-expose-headers") == "ETag, Content-Length, X-Cache"
    assert "Origin" in (reply.header("vary") or "")


def test_wildcard_subdomain_origin_is_allowed(cors_server: RunningServer) -> None:
    reply = fetch(cors_server, PATH, headers={"Origin": "https://staging.plantdb.test"})
    assert reply.header("access-control-allow-origin") == "https://staging.plantdb.test"


def test_get_from_another_origin_has_no_cors_headers(cors_server: RunningServer) -> None:
    """The object is still served (CORS is the browser's check), without CORS headers."""
    reply = fetch(cors_server, PATH, headers={"Origin": "https://evil.example"})
    assert reply.status == 200
    assert reply.header("access-control-allow-origin") is None


def test_missing_object_answer_carries_cors_headers(cors_server: RunningServer) -> None:
    """A page can read the 404 of a missing image."""
    reply = fetch(cors_server, "/cdn/company_5/plant_5/none.webp", headers={"Origin": APP})
    assert reply.status == 404
    assert reply.header("access-control-allow-origin") == APP


def test_preflight_from_an_allowed_origin_is_answered(cors_server: RunningServer) -> None:
    reply = fetch(
        cors_server,
        PATH,
        method="OPTIONS",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert reply.status == 200
    assert reply.body == b""
    assert reply.header("access-control-allow-origin") == APP
    assert reply.header("access-control-allow-methods") == "GET, HEAD, OPTIONS"
    assert reply.header("access-control-allow-headers") == "Range, If-None-Match"
    assert reply.header("access-control-max-age") == "600"
    assert reply.header("access-control-allow-credentials") == "true"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        {"Origin": APP, "Access-Control-Request-Method": "PUT"},
        {"Origin": APP, "Access-Control-Request-Method": "GET",
         "Access-Control-Request-Headers": "x-secret"},
        {"Access-Control-Request-Method": "GET"},
    ],
)  # fmt: skip
def test_preflight_the_policy_does_not_allow_is_403(cors_server: RunningServer, headers) -> None:
    reply = fetch(cors_server, PATH, method="OPTIONS", headers=headers)
    assert reply.status == 403
    assert b"<Code>AccessForbidden</Code>" in reply.body
    assert reply.header("access-control-allow-methods") is None


def test_without_a_policy_preflight_is_refused(server: RunningServer) -> None:
    """The default daemon has no CORS policy: S3's "CORS is not enabled" refusal."""
    reply = fetch(
        server, PATH, method="OPTIONS",
        headers={"Origin": APP, "Access-Control-Request-Method": "GET"},
    )  # fmt: skip
    assert reply.status == 403
    assert b"CORS is not enabled" in reply.body
    assert (
        fetch(server, PATH, headers={"Origin": APP}).header("access-control-allow-origin") is None
    )


# -- the pure rules ------------------------------------------------------------------


def test_star_policy_sends_star_without_vary() -> None:
    policy = CorsPolicy.parse("*")
    assert cors_headers(policy, "https://any.example") == {"Access-Control-Allow-Origin": "*"}


def test_no_origin_header_is_not_a_cors_request() -> None:
    assert cors_headers(CorsPolicy.parse("*"), None) == {}


def test_preflight_with_star_headers_echoes_the_requested_ones() -> None:
    headers = preflight_headers(CorsPolicy.parse("*"), APP, "GET", "Range, X-Foo")
    assert headers is not None
    assert headers["Access-Control-Allow-Headers"] == "Range, X-Foo"


def test_all_methods_expands() -> None:
    assert "DELETE" in CorsPolicy.parse("*", methods="ALL").allow_methods


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.plantdb.test", True),
        ("https://a.b.plantdb.test", True),
        ("https://plantdb.test", False),
        ("http://a.plantdb.test", False),
        ("https://a.plantdb.test.evil.example", False),
        ("https://evilplantdb.test", False),
    ],
)
def test_wildcard_origin_matching(origin: str, allowed: bool) -> None:
    assert origin_allowed(CorsPolicy.parse("https://*.plantdb.test"), origin) is allowed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origins": ""},
        {"origins": "*", "credentials": "true"},
        {"origins": "*", "methods": "GET,FETCH"},
        {"origins": "*", "max_age": "soon"},
        {"origins": "*", "max_age": "-1"},
        {"origins": "*", "credentials": "maybe"},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, str]) -> None:
    origins = kwargs.pop("origins")
    with pytest.raises(ValueError, match="PLANTCDN_CDN_CORS"):
        CorsPolicy.parse(origins, **kwargs)
