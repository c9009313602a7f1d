"""Streaming payload digests: values agree with botocore, errors agree with S3."""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.httpchecksum import (
    BaseChecksum,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from plantcdn.digests import (
    ALGORITHMS,
    PayloadDigest,
    checksums_from_headers,
    trailer_algorithm,
)
from plantcdn.errors import S3Error

BOTOCORE: dict[str, type[BaseChecksum]] = {
    "CRC32": Crc32Checksum,
    "CRC32C": CrtCrc32cChecksum,
    "CRC64NVME": CrtCrc64NvmeChecksum,
    "SHA1": Sha1Checksum,
    "SHA256": Sha256Checksum,
}
BODY = b"The quick brown fox jumps over the lazy dog\n" * 500


def botocore_b64(algorithm: str, data: bytes) -> str:
    checksum = BOTOCORE[algorithm]()
    checksum.update(data)
    return checksum.b64digest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def digest_of(data: bytes, pieces: int = 3, **kwargs: object) -> PayloadDigest:
    digest = PayloadDigest(**kwargs)  # type: ignore[arg-type]
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        digest.update(data[i : i + step])
    return digest


def expect_error(status: int, code: str, make: object) -> S3Error:
    with pytest.raises(S3Error) as info:
        make()  # type: ignore[operator]
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


# ---------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_matches_botocore_for_each_algorithm(algorithm: str) -> None:
    """Each algorithm's base64 value equals botocore's own implementation."""
    expected = botocore_b64(algorithm, BODY)
    result = digest_of(BODY, checksums={algorithm: expected}).finish()
    assert result.checksums == {algorithm: expected}


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=4000), cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_streamed_checksums_equal_botocore_wherever_the_body_is_split(
    data: bytes, cuts: list[int]
) -> None:
    """Updating in arbitrary pieces gives the one-shot botocore values."""
    digest = PayloadDigest(compute=ALGORITHMS)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for a, b in zip(points, points[1:], strict=False):
        digest.update(data[a:b])
    result = digest.finish()
    assert result.checksums == {alg: botocore_b64(alg, data) for alg in ALGORITHMS}
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.size == len(data)


def test_md5_is_always_computed_and_nothing_else_by_default() -> None:
    """With nothing to verify only MD5 (the ETag) is computed."""
    result = digest_of(BODY).finish()
    assert result.md5_hex == hashlib.md5(BODY).hexdigest()
    assert result.sha256_hex is None
    assert result.checksums == {}
    assert result.size == len(BODY)


def test_signed_content_sha256_is_verified_and_reported() -> None:
    """A signed hex x-amz-content-sha256 is checked and its value returned."""
    sha = hashlib.sha256(BODY).hexdigest()
    result = digest_of(BODY, content_sha256=sha.upper()).finish()
    assert result.sha256_hex == sha
    assert result.checksums == {}


def test_content_md5_matching_body_is_accepted() -> None:
    """A correct Content-MD5 passes."""
    assert digest_of(BODY, content_md5=md5_b64(BODY)).finish().md5_hex == (
        hashlib.md5(BODY).hexdigest()
    )


def test_trailer_checksum_is_verified_from_the_trailers() -> None:
    """A checksum announced by x-amz-trailer is checked against the decoded trailers."""
    value = botocore_b64("CRC64NVME", BODY)
    result = digest_of(BODY, trailer_algorithm="CRC64NVME").finish(
        {"x-amz-checksum-crc64nvme": value}
    )
    assert result.checksums == {"CRC64NVME": value}


def test_empty_body_digests() -> None:
    """A zero-byte body has the well-known empty digests."""
    result = PayloadDigest(compute=["CRC32"], content_sha256=hashlib.sha256(b"").hexdigest())
    assert result.finish().md5_hex == "d41d8cd98f00b204e9800998ecf8427e"
    assert result.finish().checksums == {"CRC32": "AAAAAA=="}


# ---------------------------------------------------------------------------
# Header parsing


def test_checksum_headers_are_mapped_to_algorithms() -> None:
    """x-amz-checksum-<alg> headers map to upper-case algorithm names; others ignored."""
    headers = {
        "x-amz-checksum-crc32c": "yZRlqg==",
        "x-amz-checksum-algorithm": "CRC32C",
        "x-amz-checksum-type": "FULL_OBJECT",
        "x-amz-sdk-checksum-algorithm": "CRC32C",
        "content-type": "text/plain",
    }
    assert checksums_from_headers(headers) == {"CRC32C": "yZRlqg=="}


def test_unknown_checksum_algorithm_header_is_refused() -> None:
    """An x-amz-checksum-<unknown> header is S3's 'algorithm type ... is invalid'."""
    error = expect_error(
        400,
        "InvalidRequest",
        lambda: checksums_from_headers({"x-amz-checksum-sha256a": "x"}),
    )
    assert error.message == "The algorithm type you specified in x-amz-checksum- header is invalid."


@pytest.mark.parametrize(
    ("header", "algorithm"),
    [
        (None, None),
        ("", None),
        ("x-amz-checksum-crc32", "CRC32"),
        ("X-Amz-Checksum-CRC64NVME", "CRC64NVME"),
    ],
)
def test_trailer_header_names_the_algorithm(header: str | None, algorithm: str | None) -> None:
    """x-amz-trailer maps to the checksum algorithm it announces."""
    assert trailer_algorithm(header) == algorithm


def test_unsupported_trailer_header_is_refused() -> None:
    """An x-amz-trailer naming no known checksum is refused with S3's wording."""
    error = expect_error(400, "InvalidRequest", lambda: trailer_algorithm("x-amz-checksum-sha10"))
    assert error.message == "The value specified in the x-amz-trailer header is not supported"


# ---------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "value",
    ["", "not base64!", "AAAA", "1B2M2Y8AsgTpgAmY7PhCfg=", "d41d8cd98f00b204e9800998ecf8427e"],
)
def test_malformed_content_md5_is_invalid_digest(value: str) -> None:
    """A Content-MD5 that is not base64 of 16 bytes is InvalidDigest, up front."""
    error = expect_error(400, "InvalidDigest", lambda: PayloadDigest(content_md5=value))
    assert error.message == "The Content-MD5 you specified was invalid."
    assert error.extra == {"Content-MD5": value}


def test_content_md5_mismatch_is_bad_digest_with_both_digests() -> None:
    """A wrong Content-MD5 is BadDigest reporting S3's Calculated/Expected digests."""
    wrong = md5_b64(b"something else")
    error = expect_error(400, "BadDigest", lambda: digest_of(BODY, content_md5=wrong).finish())
    assert error.message == "The Content-MD5 you specified did not match what we received."
    assert error.extra == {
        "CalculatedDigest": md5_b64(BODY),
        "ExpectedDigest": hashlib.md5(b"something else").hexdigest(),
    }


def test_content_sha256_mismatch_reports_both_hashes() -> None:
    """A body that does not hash to the signed x-amz-content-sha256 is refused."""
    claimed = hashlib.sha256(b"other").hexdigest()
    error = expect_error(
        400,
        "XAmzContentSHA256Mismatch",
        lambda: digest_of(BODY, content_sha256=claimed).finish(),
    )
    assert error.extra == {
        "ClientComputedContentSHA256": claimed,
        "S3ComputedContentSHA256": hashlib.sha256(BODY).hexdigest(),
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_mismatch_is_bad_digest_naming_the_algorithm(algorithm: str) -> None:
    """A wrong x-amz-checksum-* is BadDigest 'The <ALG> you specified did not match ...'."""
    wrong = botocore_b64(algorithm, b"different body")
    error = expect_error(
        400, "BadDigest", lambda: digest_of(BODY, checksums={algorithm: wrong}).finish()
    )
    assert error.message == f"The {algorithm} you specified did not match the calculated checksum."


@pytest.mark.parametrize("value", ["", "!!!!", "AAAA", "AAAAAAAAAAA="])
def test_malformed_checksum_header_is_invalid_request(value: str) -> None:
    """A checksum header that is not base64 of the right length is refused up front."""
    error = expect_error(400, "InvalidRequest", lambda: PayloadDigest(checksums={"CRC32": value}))
    assert error.message == "Value for x-amz-checksum-crc32 header is invalid."


def test_more_than_one_checksum_header_is_refused() -> None:
    """Two checksum headers at once are S3's 'Expecting a single x-amz-checksum- header'."""
    error = expect_error(
        400,
        "InvalidRequest",
        lambda: PayloadDigest(
            checksums={"CRC32": botocore_b64("CRC32", BODY), "SHA1": botocore_b64("SHA1", BODY)}
        ),
    )
    assert error.message.startswith("Expecting a single x-amz-checksum- header")


def test_checksum_header_together_with_trailer_is_refused() -> None:
    """A checksum both as header and as trailer is refused."""
    expect_error(
        400,
        "InvalidRequest",
        lambda: PayloadDigest(
            checksums={"CRC32": botocore_b64("CRC32", BODY)}, trailer_algorithm="CRC32"
        ),
    )


def test_trailer_checksum_mismatch_is_bad_digest() -> None:
    """A trailer checksum that does not match the body is BadDigest."""
    error = expect_error(
        400,
        "BadDigest",
        lambda: digest_of(BODY, trailer_algorithm="SHA1").finish(
            {"x-amz-checksum-sha1": botocore_b64("SHA1", b"x")}
        ),
    )
    assert error.message == "The SHA1 you specified did not match the calculated checksum."


def test_malformed_trailer_checksum_is_invalid_request() -> None:
    """A trailer value that is not valid base64 of the right size names the trailing header."""
    error = expect_error(
        400,
        "InvalidRequest",
        lambda: digest_of(BODY, trailer_algorithm="SHA1").finish(
            {"x-amz-checksum-sha1": "qvTGHdzF6KLavt4PO0gs2a6pQ00h"}
        ),
    )
    assert error.message == "Value for x-amz-checksum-sha1 trailing header is invalid."


def test_missing_trailer_checksum_is_malformed_trailer() -> None:
    """An announced trailer checksum that never arrived is MalformedTrailerError."""
    expect_error(
        400,
        "MalformedTrailerError",
        lambda: digest_of(BODY, trailer_algorithm="CRC32").finish({}),
    )
