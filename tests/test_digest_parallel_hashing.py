"""Large bodies hash MD5 on a worker thread: the digests stay exactly the inline ones."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st

from plantcdn import digests
from plantcdn.digests import ALGORITHMS, BLOCK_SIZE, PARALLEL_THRESHOLD, PayloadDigest
from plantcdn.errors import S3Error

SIZES = [
    PARALLEL_THRESHOLD - 1,
    PARALLEL_THRESHOLD,
    PARALLEL_THRESHOLD + 1,
    PARALLEL_THRESHOLD + BLOCK_SIZE - 1,
    PARALLEL_THRESHOLD + 3 * BLOCK_SIZE + 12345,
]
#: Piece sizes the random splits draw from: single bytes, network-sized reads,
#: and pieces larger than a block.
PIECE_SIZES = [1, 1, 3, 2048, 65536, 65536, 65536, BLOCK_SIZE + 7, 2 * BLOCK_SIZE + 1]


def body(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def expected_checksums(data: bytes) -> dict[str, str]:
    """Every algorithm computed in one shot by hashlib, zlib and awscrt."""
    return {
        "CRC32": b64(zlib.crc32(data).to_bytes(4, "big")),
        "CRC32C": b64(crt.crc32c(data).to_bytes(4, "big")),
        "CRC64NVME": b64(crt.crc64nvme(data).to_bytes(8, "big")),
        "SHA1": b64(hashlib.sha1(data).digest()),
        "SHA256": b64(hashlib.sha256(data).digest()),
    }


def random_split(data: bytes, seed: int) -> Iterator[bytes]:
    """*data* in random pieces, with runs of 1-byte pieces around the threshold."""
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        near_threshold = abs(i - PARALLEL_THRESHOLD) < 16
        step = 1 if near_threshold else rng.choice(PIECE_SIZES)
        yield data[i : i + step]
        i += step


def feed(digest: PayloadDigest, pieces: Iterator[bytes] | list[bytes]) -> PayloadDigest:
    for piece in pieces:
        digest.update(piece)
    return digest


def inline_result(data: bytes, **kwargs: Any) -> digests.DigestResult:
    """What the inline path (no worker) computes for *data*."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digests, "PARALLEL_THRESHOLD", len(data) + 1)
        return feed(PayloadDigest(**kwargs), [data]).finish()


class RecordingPool:
    """Stands in for the MD5 worker pool; submits to the real one and keeps the futures."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.futures: list[Future[None]] = []

    def submit(self, fn: Any, /, *args: Any) -> Future[None]:
        future = self.pool.submit(fn, *args)
        self.futures.append(future)
        return future


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> RecordingPool:
    recording = RecordingPool(digests._md5_executor())
    monkeypatch.setattr(digests, "_md5_executor", lambda: recording)
    return recording


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("seed", [1, 2])
def test_every_digest_equals_the_one_shot_values_however_the_body_is_split(
    size: int, seed: int
) -> None:
    """MD5, SHA-256, every checksum and the size equal one-shot values and the inline path."""
    data = body(size, seed)
    sha = hashlib.sha256(data).hexdigest()
    kwargs: dict[str, Any] = {
        "content_md5": b64(hashlib.md5(data).digest()),
        "content_sha256": sha,
        "compute": ALGORITHMS,
    }
    result = feed(PayloadDigest(**kwargs), random_split(data, seed)).finish()
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.sha256_hex == sha
    assert result.size == size
    assert result.checksums == expected_checksums(data)
    assert result == inline_result(data, **kwargs)


def test_one_piece_larger_than_the_threshold_gives_the_one_shot_digests() -> None:
    """A single update() with the whole large body hashes it exactly once."""
    data = body(PARALLEL_THRESHOLD + 2 * BLOCK_SIZE + 5)
    result = feed(PayloadDigest(compute=["CRC32C"]), [data]).finish()
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.checksums == {"CRC32C": expected_checksums(data)["CRC32C"]}


def test_a_reused_bytearray_piece_does_not_change_the_digest() -> None:
    """A caller may overwrite its buffer after update() returns: the block was copied."""
    data = body(PARALLEL_THRESHOLD + 2 * BLOCK_SIZE)
    digest = PayloadDigest()
    buffer = bytearray(65536)
    for i in range(0, len(data), len(buffer)):
        buffer[:] = data[i : i + len(buffer)]
        digest.update(buffer)  # type: ignore[arg-type]
    buffer[:] = bytes(len(buffer))
    assert digest.finish().md5_hex == hashlib.md5(data).hexdigest()


def test_finish_twice_gives_the_same_result() -> None:
    """finish() on a large body can be repeated."""
    digest = feed(PayloadDigest(), random_split(body(PARALLEL_THRESHOLD + BLOCK_SIZE + 1), 3))
    assert digest.finish() == digest.finish()


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=40),
    threshold=st.integers(0, 600),
    block=st.integers(1, 700),
)
def test_small_thresholds_and_blocks_give_the_inline_digests_wherever_the_body_is_split(
    data: bytes, cuts: list[int], threshold: int, block: int
) -> None:
    """With any threshold and block size, any split gives the one-shot values."""
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digests, "PARALLEL_THRESHOLD", threshold)
        patch.setattr(digests, "BLOCK_SIZE", block)
        digest = PayloadDigest(compute=ALGORITHMS)
        for a, b in zip(points, points[1:], strict=False):
            digest.update(data[a:b])
        result = digest.finish()
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.checksums == expected_checksums(data)
    assert result.size == len(data)


# ---------------------------------------------------------------------------
# Where the work runs


def test_bodies_up_to_the_threshold_never_use_the_worker_pool(pool: RecordingPool) -> None:
    """A body of exactly the threshold is hashed inline: nothing is submitted."""
    data = body(PARALLEL_THRESHOLD)
    feed(PayloadDigest(content_sha256=hashlib.sha256(data).hexdigest()), [data]).finish()
    assert pool.futures == []


def test_large_bodies_hash_md5_on_a_plantcdn_md5_thread(pool: RecordingPool) -> None:
    """Past the threshold, MD5 runs on a named worker thread, one task per BLOCK_SIZE gathered."""
    seen: set[str] = set()
    real_md5 = hashlib.md5

    class SpyMd5:
        def __init__(self, **kwargs: Any) -> None:
            self.md5 = real_md5(**kwargs)

        def update(self, data: bytes, /) -> None:
            seen.add(threading.current_thread().name)
            self.md5.update(data)

        def digest(self) -> bytes:
            return self.md5.digest()

    data = body(PARALLEL_THRESHOLD + 4 * BLOCK_SIZE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digests.hashlib, "md5", SpyMd5)
        pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        result = feed(PayloadDigest(), pieces).finish()
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert len(pool.futures) == 4
    assert any(name.startswith("plantcdn-md5") for name in seen)


def test_an_abandoned_large_body_leaves_its_md5_block_to_finish_cleanly(
    pool: RecordingPool,
) -> None:
    """A digest dropped mid-body (an aborted upload) leaves no failed or stuck work."""
    digest = feed(PayloadDigest(), random_split(body(PARALLEL_THRESHOLD + 2 * BLOCK_SIZE), 5))
    del digest
    assert pool.futures
    for future in pool.futures:
        assert future.result(timeout=10) is None


# ---------------------------------------------------------------------------
# Refusals


def large_body() -> bytes:
    return body(PARALLEL_THRESHOLD + 2 * BLOCK_SIZE + 99, seed=7)


def refusal(data: bytes, **kwargs: Any) -> S3Error:
    digest = feed(PayloadDigest(**kwargs), random_split(data, 6))
    with pytest.raises(S3Error) as info:
        digest.finish()
    return info.value


def test_large_body_content_sha256_mismatch_reports_both_hashes() -> None:
    """A wrong x-amz-content-sha256 on a large body is XAmzContentSHA256Mismatch."""
    data = large_body()
    claimed = hashlib.sha256(b"something else").hexdigest()
    error = refusal(data, content_sha256=claimed)
    assert (error.status, error.code) == (400, "XAmzContentSHA256Mismatch")
    assert error.extra == {
        "ClientComputedContentSHA256": claimed,
        "S3ComputedContentSHA256": hashlib.sha256(data).hexdigest(),
    }


def test_large_body_content_md5_mismatch_is_bad_digest_with_the_calculated_md5() -> None:
    """A wrong Content-MD5 on a large body is BadDigest naming the MD5 actually computed."""
    data = large_body()
    claimed = hashlib.md5(b"something else").digest()
    error = refusal(data, content_md5=b64(claimed))
    assert (error.status, error.code) == (400, "BadDigest")
    assert error.message == "The Content-MD5 you specified did not match what we received."
    assert error.extra == {
        "CalculatedDigest": b64(hashlib.md5(data).digest()),
        "ExpectedDigest": claimed.hex(),
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_large_body_checksum_mismatch_is_bad_digest(algorithm: str) -> None:
    """A wrong x-amz-checksum-* on a large body is BadDigest naming the algorithm."""
    wrong = expected_checksums(b"something else")[algorithm]
    error = refusal(large_body(), checksums={algorithm: wrong})
    assert (error.status, error.code) == (400, "BadDigest")
    assert error.message == f"The {algorithm} you specified did not match the calculated checksum."
