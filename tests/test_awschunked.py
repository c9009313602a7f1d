"""aws-chunked decoding: AWS's streaming example, botocore's writer, hand-built trailers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import zlib
from collections.abc import Sequence

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from plantcdn.awschunked import (
    SIGNED_PAYLOAD,
    SIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD_TRAILER,
    AwsChunkedDecoder,
)
from plantcdn.credentials import Credential
from plantcdn.errors import S3Error
from plantcdn.sigv4 import EMPTY_SHA256, AuthResult, RequestParts, authenticate

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_NOW = 1369353600.0  # 20130524T000000Z

# ---------------------------------------------------------------------------
# The example of "Signature Calculations for the Authorization Header:
# Transferring Payload in Multiple Chunks (Chunked Upload)": 66560 bytes of 'a'
# in a 64 KiB chunk and a 1 KiB chunk, with the published signatures.

SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
CHUNK2 = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
FINAL = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
EXAMPLE_PAYLOAD = b"a" * 66560
EXAMPLE_BODY = (
    f"10000;chunk-signature={CHUNK1}\r\n".encode()
    + b"a" * 65536
    + b"\r\n"
    + f"400;chunk-signature={CHUNK2}\r\n".encode()
    + b"a" * 1024
    + b"\r\n"
    + f"0;chunk-signature={FINAL}\r\n\r\n".encode()
)


def example_auth() -> AuthResult:
    """Verify the documented request headers; the result seeds the chunk chain."""
    headers = {
        "host": "s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": SIGNED_PAYLOAD,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560",
        "content-length": "66824",
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
            "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
            f"Signature={SEED}"
        ),
    }
    parts = RequestParts("PUT", "/examplebucket/chunkObject.txt", (), headers)
    return authenticate(
        parts, {AKID: Credential(AKID, SECRET)}, now=EXAMPLE_NOW, region="us-east-1"
    )


AUTH = example_auth()


def decode(
    body: bytes,
    *,
    mode: str = SIGNED_PAYLOAD,
    auth: AuthResult | None = AUTH,
    trailers: Sequence[str] = (),
    length: int | None = None,
    step: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    decoder = AwsChunkedDecoder(
        mode=mode, auth=auth, declared_trailers=trailers, decoded_length=length
    )
    if step is None:
        out = decoder.feed(body)
    else:
        out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
    return out, dict(decoder.finish())


def expect_error(body: bytes, status: int, code: str, **kwargs: object) -> S3Error:
    with pytest.raises(S3Error) as info:
        decode(body, **kwargs)  # type: ignore[arg-type]
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


def test_aws_example_seed_signature_verifies() -> None:
    """The documented request headers verify and yield the documented seed signature."""
    assert AUTH.seed_signature == SEED
    assert AUTH.payload_hash == SIGNED_PAYLOAD
    assert len(EXAMPLE_BODY) == 66824


@pytest.mark.parametrize("step", [None, 1, 7, 8192, 65536 + 90])
def test_aws_example_body_decodes_whatever_the_read_size(step: int | None) -> None:
    """The documented chunked body decodes to 66560 'a's, fed whole or byte by byte."""
    assert decode(EXAMPLE_BODY, length=66560, step=step) == (EXAMPLE_PAYLOAD, {})


def test_payload_is_returned_as_soon_as_it_arrives() -> None:
    """Chunk data is passed straight through, not held until the chunk ends."""
    decoder = AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=AUTH, decoded_length=66560)
    header = EXAMPLE_BODY.index(b"\r\n") + 2
    assert decoder.feed(EXAMPLE_BODY[: header - 1]) == b""
    assert decoder.feed(EXAMPLE_BODY[header - 1 : header + 100]) == b"a" * 100


def replace_once(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) >= 1
    return body.replace(old, new, 1)


SIGNED_MUTATIONS = {
    "first chunk signature altered": (
        replace_once(EXAMPLE_BODY, CHUNK1.encode(), CHUNK1[:-1].encode() + b"0"),
        403,
        "SignatureDoesNotMatch",
    ),
    "final chunk signature altered": (
        replace_once(EXAMPLE_BODY, FINAL.encode(), FINAL[:-1].encode() + b"0"),
        403,
        "SignatureDoesNotMatch",
    ),
    "payload byte altered": (
        replace_once(EXAMPLE_BODY, b"aaaa\r\n400", b"aaab\r\n400"),
        403,
        "SignatureDoesNotMatch",
    ),
    "chunks swapped signatures": (
        EXAMPLE_BODY.replace(CHUNK1.encode(), b"X" * 64)
        .replace(CHUNK2.encode(), CHUNK1.encode())
        .replace(b"X" * 64, CHUNK2.encode()),
        403,
        "SignatureDoesNotMatch",
    ),
    "chunk signature missing": (
        replace_once(EXAMPLE_BODY, f";chunk-signature={CHUNK1}".encode(), b""),
        400,
        "IncompleteBody",
    ),
    "size not hex": (replace_once(EXAMPLE_BODY, b"10000;", b"1000g;"), 400, "IncompleteBody"),
    "CRLF after data missing": (
        replace_once(EXAMPLE_BODY, b"a\r\n400;", b"a\n400;"),
        400,
        "IncompleteBody",
    ),
    "body truncated": (EXAMPLE_BODY[:-10], 400, "IncompleteBody"),
    "final CRLF missing": (EXAMPLE_BODY[:-2], 400, "IncompleteBody"),
    "data after the end": (EXAMPLE_BODY + b"x", 400, "IncompleteBody"),
    "unexpected trailer": (
        EXAMPLE_BODY[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        400,
        "IncompleteBody",
    ),
}


@pytest.mark.parametrize("name", list(SIGNED_MUTATIONS))
def test_signed_body_mutation_is_refused(name: str) -> None:
    """One change to the documented body gives exactly one status and code."""
    body, status, code = SIGNED_MUTATIONS[name]
    expect_error(body, status, code, length=66560)
    expect_error(body, status, code, length=66560, step=1)


def test_declared_length_larger_than_payload_is_incomplete_body() -> None:
    """A body shorter than x-amz-decoded-content-length is IncompleteBody with the counts."""
    error = expect_error(EXAMPLE_BODY, 400, "IncompleteBody", length=70000)
    assert error.extra == {"NumberBytesExpected": "70000", "NumberBytesProvided": "66560"}


def test_declared_length_smaller_than_payload_is_refused_before_the_excess() -> None:
    """An overrun is refused at the chunk header that would exceed the declared size."""
    decoder = AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=AUTH, decoded_length=65536)
    second = EXAMPLE_BODY.index(b"400;")
    assert decoder.feed(EXAMPLE_BODY[:second]) == b"a" * 65536
    with pytest.raises(S3Error) as info:
        decoder.feed(EXAMPLE_BODY[second:])
    assert info.value.code == "IncompleteBody"
    assert info.value.extra["NumberBytesExpected"] == "65536"


def test_chunk_over_the_size_cap_is_refused_before_its_data() -> None:
    """A chunk header announcing more than max_chunk_size is refused at once."""
    decoder = AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=AUTH, max_chunk_size=1024)
    with pytest.raises(S3Error) as info:
        decoder.feed(EXAMPLE_BODY[:100])
    assert (info.value.status, info.value.code) == (400, "InvalidArgument")


def test_endless_header_line_is_refused_within_the_line_cap() -> None:
    """A chunk header that never ends is refused once it passes 4 KiB."""
    decoder = AwsChunkedDecoder(mode=UNSIGNED_PAYLOAD_TRAILER, auth=None)
    with pytest.raises(S3Error) as info:
        for _ in range(5):
            decoder.feed(b"0" * 1000)
    assert info.value.code == "IncompleteBody"


def test_finish_before_the_final_chunk_is_incomplete_body() -> None:
    """Ending the body mid-stream is IncompleteBody 'terminated unexpectedly'."""
    decoder = AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=AUTH)
    decoder.feed(EXAMPLE_BODY[:1000])
    with pytest.raises(S3Error) as info:
        decoder.finish()
    assert info.value.code == "IncompleteBody"
    assert info.value.message == "The request body terminated unexpectedly"


def test_signed_modes_need_the_verified_request() -> None:
    """Constructing a signed-mode decoder without the AuthResult is a programming error."""
    with pytest.raises(ValueError):
        AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=None)
    with pytest.raises(ValueError):
        AwsChunkedDecoder(mode="UNSIGNED-PAYLOAD", auth=None)


# ---------------------------------------------------------------------------
# Bodies built here, signed with the example key, for every mode.


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def sign(text: str, auth: AuthResult = AUTH) -> str:
    return hmac.new(auth.signing_key, text.encode(), hashlib.sha256).hexdigest()


def build_body(
    payload: bytes,
    chunk_sizes: Sequence[int],
    *,
    mode: str,
    trailers: Sequence[tuple[str, str]] = (),
    auth: AuthResult = AUTH,
    trailer_signature: str | None = None,
) -> bytes:
    """An aws-chunked body as the SDKs write it, signed chunk by chunk."""
    signed = mode != UNSIGNED_PAYLOAD_TRAILER
    previous = auth.seed_signature
    out = bytearray()
    pieces = []
    offset = 0
    for size in chunk_sizes:
        pieces.append(payload[offset : offset + size])
        offset += size
    assert offset == len(payload)
    for piece in [*pieces, b""]:
        if signed:
            previous = sign(
                f"AWS4-HMAC-SHA256-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n{previous}\n"
                f"{EMPTY_SHA256}\n{hashlib.sha256(piece).hexdigest()}",
                auth,
            )
            out += f"{len(piece):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(piece):x}\r\n".encode()
        if piece:
            out += piece + b"\r\n"
    canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
    out += canonical.replace("\n", "\r\n").encode()
    if mode == SIGNED_PAYLOAD_TRAILER:
        if trailer_signature is None:
            trailer_signature = sign(
                f"AWS4-HMAC-SHA256-TRAILER\n{auth.amz_date}\n{auth.scope}\n{previous}\n"
                f"{hashlib.sha256(canonical.encode()).hexdigest()}",
                auth,
            )
        if trailer_signature:
            out += f"x-amz-trailer-signature:{trailer_signature}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


PAYLOAD = bytes(range(256)) * 80  # 20480 bytes
SIZES = (8192, 8192, 4096)
CRC = ("x-amz-checksum-crc32", crc32_b64(PAYLOAD))


def test_unsigned_trailer_body_from_botocore_decodes() -> None:
    """The body botocore itself writes for STREAMING-UNSIGNED-PAYLOAD-TRAILER decodes."""
    wrapper = AwsChunkedWrapper(
        io.BytesIO(PAYLOAD),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=8192,
    )
    body = wrapper.read()
    out, trailers = decode(
        body,
        mode=UNSIGNED_PAYLOAD_TRAILER,
        auth=None,
        trailers=["x-amz-checksum-crc32"],
        length=len(PAYLOAD),
        step=1000,
    )
    assert out == PAYLOAD
    assert trailers == {"x-amz-checksum-crc32": crc32_b64(PAYLOAD)}


def test_signed_trailer_body_decodes_and_returns_the_checksum() -> None:
    """Chunk signatures and x-amz-trailer-signature verify; the trailer comes back."""
    body = build_body(PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC])
    for step in (None, 1, 333):
        out, trailers = decode(
            body,
            mode=SIGNED_PAYLOAD_TRAILER,
            trailers=["x-amz-checksum-crc32"],
            length=len(PAYLOAD),
            step=step,
        )
        assert out == PAYLOAD
        assert trailers == {"x-amz-checksum-crc32": CRC[1]}


def test_signed_body_without_trailer_built_here_decodes() -> None:
    """The builder agrees with the AWS example's signing, so its vectors are sound."""
    body = build_body(EXAMPLE_PAYLOAD, (65536, 1024), mode=SIGNED_PAYLOAD)
    assert body == EXAMPLE_BODY


TRAILER_CASES = {
    "trailer signature altered": (
        build_body(
            PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC], trailer_signature="0" * 64
        ),
        SIGNED_PAYLOAD_TRAILER,
        403,
        "SignatureDoesNotMatch",
    ),
    "trailer value altered after signing": (
        build_body(PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC]).replace(
            CRC[1].encode(), b"AAAAAA=="
        ),
        SIGNED_PAYLOAD_TRAILER,
        403,
        "SignatureDoesNotMatch",
    ),
    "trailer signature missing": (
        build_body(
            PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC], trailer_signature=""
        ),
        SIGNED_PAYLOAD_TRAILER,
        400,
        "IncompleteBody",
    ),
    "signed trailer missing entirely": (
        build_body(PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER),
        SIGNED_PAYLOAD_TRAILER,
        400,
        "IncompleteBody",
    ),
    "unsigned declared trailer missing": (
        build_body(PAYLOAD, SIZES, mode=UNSIGNED_PAYLOAD_TRAILER),
        UNSIGNED_PAYLOAD_TRAILER,
        400,
        "MalformedTrailerError",
    ),
    "trailer other than declared": (
        build_body(
            PAYLOAD,
            SIZES,
            mode=UNSIGNED_PAYLOAD_TRAILER,
            trailers=[("x-amz-checksum-sha1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
        ),
        UNSIGNED_PAYLOAD_TRAILER,
        400,
        "MalformedTrailerError",
    ),
    "trailer line without colon": (
        build_body(PAYLOAD, SIZES, mode=UNSIGNED_PAYLOAD_TRAILER).replace(
            b"0\r\n\r\n", b"0\r\nx-amz-checksum-crc32\r\n\r\n"
        ),
        UNSIGNED_PAYLOAD_TRAILER,
        400,
        "MalformedTrailerError",
    ),
    "small non-final chunk (unsigned)": (
        build_body(PAYLOAD, (4096, 16384), mode=UNSIGNED_PAYLOAD_TRAILER, trailers=[CRC]),
        UNSIGNED_PAYLOAD_TRAILER,
        403,
        "InvalidChunkSizeError",
    ),
    "small non-final chunk (signed)": (
        build_body(PAYLOAD, (8191, 12289), mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC]),
        SIGNED_PAYLOAD_TRAILER,
        403,
        "InvalidChunkSizeError",
    ),
}


@pytest.mark.parametrize("name", list(TRAILER_CASES))
def test_trailer_body_mutation_is_refused(name: str) -> None:
    """Each broken trailer body is refused with S3's status and code."""
    body, mode, status, code = TRAILER_CASES[name]
    expect_error(body, status, code, mode=mode, trailers=["x-amz-checksum-crc32"], step=1)


def test_small_chunk_error_names_the_chunk_and_its_size() -> None:
    """InvalidChunkSizeError reports S3's Chunk and BadChunkSize elements."""
    body, mode, _, _ = TRAILER_CASES["small non-final chunk (unsigned)"]
    error = expect_error(
        body, 403, "InvalidChunkSizeError", mode=mode, trailers=["x-amz-checksum-crc32"]
    )
    assert error.extra == {"Chunk": "2", "BadChunkSize": "4096"}
    assert error.message == "Only the last chunk is allowed to have a size less than 8192 bytes"


def test_single_small_chunk_is_allowed() -> None:
    """A payload smaller than 8 KiB fits in one (final) data chunk."""
    body = build_body(b"hello", (5,), mode=UNSIGNED_PAYLOAD_TRAILER, trailers=[])
    assert decode(body, mode=UNSIGNED_PAYLOAD_TRAILER, auth=None, length=5) == (b"hello", {})


def test_empty_payload_is_just_the_final_chunk() -> None:
    """A zero-byte object is a lone final chunk (plus trailers)."""
    body = build_body(
        b"", (), mode=SIGNED_PAYLOAD_TRAILER, trailers=[("x-amz-checksum-crc32", "AAAAAA==")]
    )
    out, trailers = decode(
        body, mode=SIGNED_PAYLOAD_TRAILER, trailers=["x-amz-checksum-crc32"], length=0
    )
    assert out == b"" and trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


# ---------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(EXAMPLE_BODY)), max_size=40))
def test_random_split_points_give_identical_output(cuts: list[int]) -> None:
    """However the documented body is split into reads, the output is the same."""
    points = sorted({0, len(EXAMPLE_BODY), *cuts})
    decoder = AwsChunkedDecoder(mode=SIGNED_PAYLOAD, auth=AUTH, decoded_length=66560)
    out = b"".join(
        decoder.feed(EXAMPLE_BODY[a:b]) for a, b in zip(points, points[1:], strict=False)
    )
    assert out == EXAMPLE_PAYLOAD
    assert decoder.finish() == {}


TRAILER_BODY = build_body(PAYLOAD, SIZES, mode=SIGNED_PAYLOAD_TRAILER, trailers=[CRC])


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(TRAILER_BODY)), max_size=40))
def test_random_split_points_give_identical_trailers(cuts: list[int]) -> None:
    """Splitting a signed-trailer body anywhere yields the same payload and trailers."""
    points = sorted({0, len(TRAILER_BODY), *cuts})
    decoder = AwsChunkedDecoder(
        mode=SIGNED_PAYLOAD_TRAILER,
        auth=AUTH,
        declared_trailers=["x-amz-checksum-crc32"],
        decoded_length=len(PAYLOAD),
    )
    out = b"".join(
        decoder.feed(TRAILER_BODY[a:b]) for a, b in zip(points, points[1:], strict=False)
    )
    assert out == PAYLOAD
    assert decoder.finish() == {"x-amz-checksum-crc32": CRC[1]}


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    b"0",
                    b"1",
                    b"2000",
                    b"ffffffffffffffffff",
                    b";",
                    b"chunk-signature=",
                    b"\r\n",
                    b"\n",
                    b":",
                    b"x-amz-checksum-crc32",
                    b"x-amz-trailer-signature",
                    b"a" * 64,
                    CHUNK1.encode(),
                    b"\xff",
                ]
            ),
            max_size=30,
        ).map(b"".join),
    ),
    mode=st.sampled_from([SIGNED_PAYLOAD, UNSIGNED_PAYLOAD_TRAILER, SIGNED_PAYLOAD_TRAILER]),
    step=st.integers(min_value=1, max_value=64),
)
def test_arbitrary_bytes_only_ever_raise_s3_error(data: bytes, mode: str, step: int) -> None:
    """Garbage bodies are refused with S3Error, never another exception."""
    decoder = AwsChunkedDecoder(
        mode=mode, auth=AUTH, declared_trailers=["x-amz-checksum-crc32"], decoded_length=100
    )
    try:
        for i in range(0, len(data), step):
            decoder.feed(data[i : i + step])
        decoder.finish()
    except S3Error:
        pass
