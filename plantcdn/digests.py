"""Payload digests computed while an upload streams past.

MD5 is always computed (it is the ETag).  SHA-256 is computed only when a
signed ``x-amz-content-sha256`` must be checked or a SHA256 checksum was
asked for, and each CRC only when its checksum was asked for: this runs once
per body byte.

AWS pages followed: "Checking object integrity in Amazon S3" (User Guide) for
the algorithms and their base64 big-endian encodings; PutObject (API
Reference) for ``Content-MD5`` and ``x-amz-checksum-*``.  Error wording is
what S3 answers, as quoted in client issue trackers.

CRC32C and CRC64NVME come from ``awscrt`` (the AWS Common Runtime, botocore's
own optional accelerator, C implementations); CRC32 from :mod:`zlib`.

Large bodies hash MD5 on a worker thread while the calling thread runs the
other digests (and goes on writing the file): hashlib releases the GIL while
it hashes more than 2 KiB, and MD5 (~600 MB/s) is the slowest of them, so a
big body hashes at about MD5's own speed instead of the sum of all of them
when a second core is free.  See :class:`PayloadDigest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Protocol

from attrs import frozen
from awscrt import checksums as crt

from plantcdn.errors import S3Error

__all__ = [
    "ALGORITHMS",
    "DigestResult",
    "PayloadDigest",
    "checksums_from_headers",
    "requested_algorithm",
    "trailer_algorithm",
]

ALGORITHMS: Final = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def requested_algorithm(raw: str) -> str:
    """An ``x-amz-checksum-algorithm`` value (CreateMultipartUpload, CopyObject, POST
    Object's field) in canonical form, or S3's refusal of one it does not know."""
    algorithm = raw.strip().upper()
    if algorithm not in ALGORITHMS:
        raise S3Error(
            "InvalidRequest",
            "Checksum algorithm provided is unsupported. Please try again with any of the "
            f"valid types: [{', '.join(ALGORITHMS)}]",
        )
    return algorithm


_DIGEST_BYTES: Final = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
_HEADER_PREFIX: Final = "x-amz-checksum-"
#: x-amz-checksum-* headers that name no checksum value.
_NOT_VALUES: Final = frozenset(
    {"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"}
)
_MULTIPLE: Final = (
    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
)

#: Bodies up to this size are hashed inline: most uploads are small, and a
#: thread hand-off per block would cost more than it saves.
PARALLEL_THRESHOLD: Final = 4 * 1024 * 1024
#: Past the threshold, pieces are gathered into blocks of at least this size;
#: one block's MD5 runs on a worker while the next one gathers, so each upload
#: holds at most about two blocks.
BLOCK_SIZE: Final = 1024 * 1024
_MD5_WORKERS: Final = min(4, os.cpu_count() or 1)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _update_each(update: Callable[[bytes], object], pieces: list[bytes]) -> None:
    for piece in pieces:
        update(piece)


def _md5_executor() -> ThreadPoolExecutor:
    """The process-wide MD5 worker pool, created on first use (small uploads never need it)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=_MD5_WORKERS, thread_name_prefix="plantcdn-md5"
            )
        return _executor


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with the hashlib interface; *fn(data, previous)* -> int."""

    def __init__(self, fn: Callable[[bytes, int], int], size: int) -> None:
        self._fn = fn
        self._size = size
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def _new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "CRC32":
        return _Crc(zlib.crc32, 4)
    if algorithm == "CRC32C":
        return _Crc(crt.crc32c, 4)
    if algorithm == "CRC64NVME":
        return _Crc(crt.crc64nvme, 8)
    if algorithm == "SHA1":
        return hashlib.sha1(usedforsecurity=False)  # an S3 integrity checksum, not security
    if algorithm == "SHA256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode_b64(value: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def checksums_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-checksum-<alg>`` request headers as ``{ALG: base64}``.

    An unknown algorithm suffix is refused as S3 refuses it; the
    ``-algorithm``/``-type``/``-mode`` headers are not values and are skipped.
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(_HEADER_PREFIX) or lower in _NOT_VALUES:
            continue
        algorithm = lower[len(_HEADER_PREFIX) :].upper()
        if algorithm not in _DIGEST_BYTES:
            raise S3Error(
                "InvalidRequest",
                "The algorithm type you specified in x-amz-checksum- header is invalid.",
            )
        found[algorithm] = value
    return found


def trailer_algorithm(x_amz_trailer: str | None) -> str | None:
    """The checksum algorithm an ``x-amz-trailer`` header announces, if any."""
    if x_amz_trailer is None or not x_amz_trailer.strip():
        return None
    names = [name.strip().lower() for name in x_amz_trailer.split(",") if name.strip()]
    algorithms = []
    for name in names:
        algorithm = name[len(_HEADER_PREFIX) :].upper() if name.startswith(_HEADER_PREFIX) else ""
        if algorithm not in _DIGEST_BYTES:
            raise S3Error(
                "InvalidRequest", "The value specified in the x-amz-trailer header is not supported"
            )
        algorithms.append(algorithm)
    if len(algorithms) > 1:
        raise S3Error("InvalidRequest", _MULTIPLE)
    return algorithms[0]


@frozen
class DigestResult:
    """What the body turned out to be.

    ``sha256_hex`` is ``None`` when SHA-256 was neither verified nor requested
    (it is not computed then).  ``checksums`` maps each requested (header,
    trailer or *compute*) algorithm to its base64 value.
    """

    md5_hex: str
    sha256_hex: str | None
    size: int
    checksums: Mapping[str, str]


class PayloadDigest:
    """Hash a request body as it streams and check it against what the client declared.

    *content_sha256*: the signed hex ``x-amz-content-sha256`` to verify, or
    ``None`` when it is not a digest (``UNSIGNED-PAYLOAD``, streaming modes).
    *checksums*: ``{ALG: base64}`` from :func:`checksums_from_headers`.
    *trailer_algorithm*: the algorithm whose value arrives as an aws-chunked
    trailer (see :func:`trailer_algorithm`).  *compute*: further algorithms to
    compute without anything to check (e.g. a default object checksum).

    :meth:`update` is synchronous for its caller.  The first
    :data:`PARALLEL_THRESHOLD` bytes are hashed inline.  Past that, the other
    digests still run on each piece in the calling thread, while pieces are
    gathered (as immutable ``bytes``, never joined) into blocks of at least
    :data:`BLOCK_SIZE` whose MD5 updates go to a worker thread (hashlib
    releases the GIL for them).
    The MD5 object belongs to the worker while its future is pending: the
    caller waits for that future before it submits the next block or reads
    the digest in :meth:`finish`, so blocks are hashed in order and the
    results are exactly the inline ones.  A digest dropped mid-body (an
    aborted upload) needs no cleanup: its pending block just finishes.
    """

    def __init__(
        self,
        *,
        content_md5: str | None = None,
        content_sha256: str | None = None,
        checksums: Mapping[str, str] | None = None,
        trailer_algorithm: str | None = None,
        compute: Iterable[str] = (),
    ) -> None:
        checksums = dict(checksums or {})
        self._expected_md5: bytes | None = None
        self._content_md5 = content_md5
        if content_md5 is not None:
            self._expected_md5 = _decode_b64(content_md5, 16)
            if self._expected_md5 is None:
                raise S3Error(
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid.",
                    extra={"Content-MD5": content_md5},
                )
        if len(checksums) > 1:
            raise S3Error("InvalidRequest", _MULTIPLE)
        if checksums and trailer_algorithm is not None:
            raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header")
        self._expected: dict[str, bytes] = {}
        for algorithm, value in checksums.items():
            if algorithm not in _DIGEST_BYTES:
                raise ValueError(f"unknown checksum algorithm {algorithm!r}")
            raw = _decode_b64(value, _DIGEST_BYTES[algorithm])
            if raw is None:
                raise S3Error(
                    "InvalidRequest",
                    f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.",
                )
            self._expected[algorithm] = raw
        if trailer_algorithm is not None and trailer_algorithm not in _DIGEST_BYTES:
            raise ValueError(f"unknown checksum algorithm {trailer_algorithm!r}")
        self._trailer_algorithm = trailer_algorithm
        self._content_sha256 = content_sha256.lower() if content_sha256 is not None else None

        for algorithm in compute:
            if algorithm not in _DIGEST_BYTES:
                raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        self._reported = set(self._expected) | set(compute)
        if trailer_algorithm is not None:
            self._reported.add(trailer_algorithm)
        wanted = set(self._reported)
        if self._content_sha256 is not None:
            wanted.add("SHA256")
        self._hashers: dict[str, _Hasher] = {alg: _new_hasher(alg) for alg in sorted(wanted)}
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._others = [h.update for h in self._hashers.values()]
        self._updates = [self._md5.update, *self._others]
        self._size = 0
        self._blocks = False  # past PARALLEL_THRESHOLD: gather blocks, MD5 on a worker
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._md5_pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        """Feed the next piece of the (decoded) body."""
        self._size += len(data)
        if not self._blocks:
            if self._size <= PARALLEL_THRESHOLD:
                for update in self._updates:
                    update(data)
                return
            self._blocks = True
        # Keep an immutable copy of a caller's buffer that it may reuse once we return.
        piece = data if type(data) is bytes else bytes(data)
        for update in self._others:
            update(piece)
        self._gathered.append(piece)
        self._gathered_size += len(piece)
        if self._gathered_size >= BLOCK_SIZE:
            self._md5_of_gathered(parallel=True)

    def _md5_of_gathered(self, *, parallel: bool) -> None:
        """MD5 of the gathered pieces, on a worker when *parallel* (never joined: no copy)."""
        pieces = self._gathered
        self._gathered = []
        self._gathered_size = 0
        self._wait_md5()
        if parallel:
            self._md5_pending = _md5_executor().submit(_update_each, self._md5.update, pieces)
        else:
            _update_each(self._md5.update, pieces)

    def _wait_md5(self) -> None:
        """Wait until the worker is done with the MD5 object."""
        if self._md5_pending is not None:
            pending, self._md5_pending = self._md5_pending, None
            pending.result()

    def finish(self, trailers: Mapping[str, str] | None = None) -> DigestResult:
        """Check everything declared; *trailers* are the aws-chunked trailers."""
        if self._gathered:
            self._md5_of_gathered(parallel=False)
        self._wait_md5()
        digests = {alg: hasher.digest() for alg, hasher in self._hashers.items()}
        md5 = self._md5.digest()
        sha256_hex = digests["SHA256"].hex() if "SHA256" in digests else None

        if self._content_sha256 is not None and sha256_hex != self._content_sha256:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                extra={
                    "ClientComputedContentSHA256": self._content_sha256,
                    "S3ComputedContentSHA256": sha256_hex or "",
                },
            )
        if self._expected_md5 is not None and md5 != self._expected_md5:
            raise S3Error(
                "BadDigest",
                extra={"CalculatedDigest": _b64(md5), "ExpectedDigest": self._expected_md5.hex()},
            )
        for algorithm, expected in self._expected.items():
            if digests[algorithm] != expected:
                raise _checksum_mismatch(algorithm)
        if self._trailer_algorithm is not None:
            self._check_trailer(self._trailer_algorithm, digests, dict(trailers or {}))

        return DigestResult(
            md5_hex=md5.hex(),
            sha256_hex=sha256_hex,
            size=self._size,
            checksums={alg: _b64(digests[alg]) for alg in sorted(self._reported)},
        )

    def _check_trailer(
        self, algorithm: str, digests: Mapping[str, bytes], trailers: Mapping[str, str]
    ) -> None:
        name = _HEADER_PREFIX + algorithm.lower()
        value = trailers.get(name)
        if value is None:
            raise S3Error(
                "MalformedTrailerError",
                "The request contained trailing data that was not well-formed or did not "
                "conform to our published schema.",
            )
        raw = _decode_b64(value, _DIGEST_BYTES[algorithm])
        if raw is None:
            raise S3Error("InvalidRequest", f"Value for {name} trailing header is invalid.")
        if digests[algorithm] != raw:
            raise _checksum_mismatch(algorithm)


def _checksum_mismatch(algorithm: str) -> S3Error:
    return S3Error(
        "BadDigest", f"The {algorithm} you specified did not match the calculated checksum."
    )
