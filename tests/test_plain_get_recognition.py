"""Which request heads the /cdn edge lane may answer itself (plantcdn.plainget).

Anything that could change the answer, or that Twisted would refuse, must be
left to the full path: the function says ``None`` for it.
"""

from __future__ import annotations

import pytest

from plantcdn.plainget import MAX_PLAIN_HEAD, plain_get_target

MOUNT = b"/cdn/"
PATH = b"/cdn/company_1/plant_2/photo.webp"


def head(*fields: bytes, line: bytes = b"GET " + PATH + b" HTTP/1.1") -> bytes:
    return b"\r\n".join((line, *fields)) + b"\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        head(),
        head(b"Host: 127.0.0.1:8000"),
        head(b"Host: cdn.example", b"User-Agent: wrk", b"Accept: */*"),
        head(b"host:cdn.example", b"CONNECTION: Keep-Alive"),
        head(
            b"Host: cdn.example",
            b"Connection: keep-alive",
            b'sec-ch-ua: "Chromium";v="131"',
            b"sec-ch-ua-mobile: ?0",
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
            b"Accept: image/avif,image/webp,image/apng,*/*;q=0.8",
            b"Sec-Fetch-Site: same-site",
            b"Sec-Fetch-Mode: no-cors",
            b"Sec-Fetch-Dest: image",
            b"Referer: https://plants.example/",
            b"Accept-Encoding: gzip, deflate, br",
            b"Accept-Language: en-GB,en;q=0.9",
            b"Priority: i",
        ),
    ],
    ids=["bare", "host", "wrk", "case", "browser-image"],
)
def test_plain_image_fetches_are_recognised(data: bytes) -> None:
    assert plain_get_target(data, MOUNT) == PATH


def test_percent_encoded_target_is_returned_raw() -> None:
    """Decoding (exactly once) is the CDN resource's job, not the recogniser's."""
    data = head(line=b"GET /cdn/company_1/plant_2/a%20b.webp HTTP/1.1")
    assert plain_get_target(data, MOUNT) == b"/cdn/company_1/plant_2/a%20b.webp"


@pytest.mark.parametrize(
    "data",
    [
        head(line=b"GET " + PATH + b"?Expires=1&Signature=x&Key-Pair-Id=K HTTP/1.1"),
        head(line=b"GET " + PATH + b"#frag HTTP/1.1"),
        head(b"Range: bytes=0-9"),
        head(b"If-None-Match: \"abc\""),
        head(b"If-Modified-Since: Tue, 24 Nov 2026 10:00:00 GMT"),
        head(b"If-Match: *"),
        head(b"If-Unmodified-Since: Tue, 24 Nov 2026 10:00:00 GMT"),
        head(b"Origin: https://plants.example"),
        head(b"Cookie: CloudFront-Policy=x"),
        head(b"Authorization: AWS4-HMAC-SHA256 Credential=x"),
        head(b"Connection: close"),
        head(b"Connection: keep-alive, Upgrade", b"Upgrade: h2c"),
        head(b"Content-Length: 0"),
        head(b"Transfer-Encoding: chunked"),
        head(b"Expect: 100-continue"),
        head(b"X-Anything: 1"),
    ],
    ids=[
        "query", "fragment", "range", "if-none-match", "if-modified-since", "if-match",
        "if-unmodified-since", "origin", "cookie", "authorization", "close", "upgrade",
        "content-length", "chunked", "expect", "unknown-header",
    ],
)
def test_requests_whose_answer_may_differ_take_the_full_path(data: bytes) -> None:
    assert plain_get_target(data, MOUNT) is None


@pytest.mark.parametrize(
    "data",
    [
        head(line=b"GET " + PATH + b" HTTP/1.0"),
        head(line=b"HEAD " + PATH + b" HTTP/1.1"),
        head(line=b"get " + PATH + b" HTTP/1.1"),
        head(line=b"GET  " + PATH + b" HTTP/1.1"),
        head(line=b"GET http://cdn.example" + PATH + b" HTTP/1.1"),
        head(line=b"GET /_plantcdn/health HTTP/1.1"),
        head(line=b"GET /cdnx/company_1/plant_2/a HTTP/1.1"),
        head(line=b"GET /cdn/company_1/plant_2/\x00 HTTP/1.1"),
        head(line=b"GET /cdn/company_1/plant_2/\xc3\xa9 HTTP/1.1"),
        head(b"Host : cdn.example"),
        head(b"Host cdn.example"),
        head(b" Host: folded"),
        head(b"Host: cdn.example", b"\tcontinued"),
        head(b"Host: caf\xe9"),
        head(b"Host: a\x00b"),
        head(b"Host: a\nX-Evil: 1"),
    ],
    ids=[
        "http10", "head", "lower-method", "double-space", "absolute-form", "other-mount",
        "near-mount", "nul", "utf8-target", "space-before-colon", "no-colon", "leading-space",
        "obs-fold", "obs-text", "nul-value", "bare-lf",
    ],
)
def test_unusual_or_malformed_heads_take_the_full_path(data: bytes) -> None:
    assert plain_get_target(data, MOUNT) is None


def test_only_a_complete_head_with_nothing_after_it_is_recognised() -> None:
    whole = head(b"Host: cdn.example")
    assert plain_get_target(whole[:-2], MOUNT) is None  # the blank line not yet in
    assert plain_get_target(whole + whole, MOUNT) is None  # pipelined: Twisted keeps order
    assert plain_get_target(whole + b"x", MOUNT) is None


def test_oversized_head_takes_the_full_path() -> None:
    data = head(b"User-Agent: " + b"a" * MAX_PLAIN_HEAD)
    assert plain_get_target(data, MOUNT) is None
