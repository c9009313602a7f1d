"""Sans-IO decoder for ``Content-Encoding: aws-chunked`` request bodies.

Feed it the body as it arrives, in pieces of any size; it hands back the decoded
payload bytes at once (nothing is held beyond a chunk header line) and raises
:class:`~plantcdn.errors.S3Error` as soon as the framing or a signature is
wrong.  Bytes already handed back are not authenticated until their chunk
ends: on any error the caller must throw away everything it wrote.

AWS pages followed (Amazon S3 API Reference):

* "Signature Calculations for the Authorization Header: Transferring Payload
  in Multiple Chunks (Chunked Upload)" (``sigv4-streaming``): chunk framing,
  chained chunk signatures, the final zero-length chunk, 8 KiB minimum;
* "Signature calculations for trailing headers (chunked uploads)"
  (``sigv4-streaming-trailers``): the trailer section and
  ``x-amz-trailer-signature``.

Error codes follow S3's observed answers: any framing fault is
``IncompleteBody`` "The request body terminated unexpectedly"; a decoded size
that differs from ``x-amz-decoded-content-length`` is ``IncompleteBody`` with
``NumberBytesExpected``/``NumberBytesProvided``; a small non-final chunk is
``InvalidChunkSizeError`` with ``Chunk``/``BadChunkSize`` (in every mode,
unsigned trailers included); trailers that do not match ``x-amz-trailer`` are
``MalformedTrailerError``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final

from plantcdn.errors import S3Error
from plantcdn.sigv4 import EMPTY_SHA256, AuthResult, sign

__all__ = [
    "MAX_LINE",
    "MIN_CHUNK_SIZE",
    "SIGNED_PAYLOAD",
    "SIGNED_PAYLOAD_TRAILER",
    "UNSIGNED_PAYLOAD_TRAILER",
    "AwsChunkedDecoder",
]

SIGNED_PAYLOAD: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
UNSIGNED_PAYLOAD_TRAILER: Final = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_PAYLOAD_TRAILER: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_MODES: Final = frozenset({SIGNED_PAYLOAD, UNSIGNED_PAYLOAD_TRAILER, SIGNED_PAYLOAD_TRAILER})

#: Every chunk but the last must carry at least this much data (sigv4-streaming).
MIN_CHUNK_SIZE: Final = 8192
#: Longest chunk header or trailer line kept while waiting for its CRLF.
MAX_LINE: Final = 4096
#: At most this many trailer lines (S3 sends one checksum and one signature).
MAX_TRAILERS: Final = 16

_SIGNATURE_EXT: Final = b";chunk-signature="
_TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")

# Parser states.
_HEADER: Final = 0
_DATA: Final = 1
_DATA_CRLF: Final = 2
_TRAILER: Final = 3
_DONE: Final = 4


def _truncated() -> S3Error:
    return S3Error("IncompleteBody", "The request body terminated unexpectedly")


class AwsChunkedDecoder:
    """Decode one aws-chunked body, verifying chunk and trailer signatures.

    *mode* is the signed ``x-amz-content-sha256`` value; *auth* the verified
    request (required for the signed modes, whose chunk signatures chain from
    ``auth.seed_signature``); *declared_trailers* the ``x-amz-trailer`` names;
    *decoded_length* the ``x-amz-decoded-content-length``.
    """

    def __init__(
        self,
        *,
        mode: str,
        auth: AuthResult | None,
        declared_trailers: Sequence[str] = (),
        decoded_length: int | None = None,
        max_chunk_size: int = 16 * 1024 * 1024,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"not an aws-chunked mode: {mode!r}")
        self._signed = mode != UNSIGNED_PAYLOAD_TRAILER
        self._expects_trailer = mode != SIGNED_PAYLOAD
        if self._signed:
            if auth is None:
                raise ValueError(f"{mode} needs the verified request's AuthResult")
            self._key = auth.signing_key
            self._previous = auth.seed_signature
            self._prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{auth.amz_date}\n{auth.scope}\n"
            self._trailer_prefix = f"AWS4-HMAC-SHA256-TRAILER\n{auth.amz_date}\n{auth.scope}\n"
        self._declared = tuple(name.strip().lower() for name in declared_trailers if name.strip())
        self._decoded_length = decoded_length
        self._max_chunk_size = max_chunk_size

        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._crlf_seen = 0  # bytes of the CRLF after chunk data matched so far
        self._chunk_signature = b""
        self._chunk_hash = hashlib.sha256() if self._signed else None
        self._chunk_index = 0
        self._previous_size: int | None = None
        self._total = 0
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume *data*; return the payload bytes it completes (maybe ``b""``)."""
        if not data:
            return b""
        if not isinstance(data, bytes):
            data = bytes(data)
        view = memoryview(data)
        out: list[bytes] = []
        pos = 0
        end = len(view)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                piece = view[pos : pos + take]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                out.append(piece.tobytes())
                self._remaining -= take
                pos += take
                if self._remaining == 0:
                    self._state = _DATA_CRLF
            elif state == _DATA_CRLF:
                expected = b"\r\n"[self._crlf_seen]
                if view[pos] != expected:
                    raise _truncated()
                pos += 1
                self._crlf_seen += 1
                if self._crlf_seen == 2:
                    self._crlf_seen = 0
                    self._end_of_chunk_data()
            elif state in (_HEADER, _TRAILER):
                newline = data.find(b"\n", pos)
                stop = end if newline == -1 else newline + 1
                if len(self._line) + (stop - pos) > MAX_LINE:
                    raise _truncated()
                self._line += view[pos:stop]
                pos = stop
                if newline != -1:
                    line = bytes(self._line)
                    self._line.clear()
                    if not line.endswith(b"\r\n"):
                        raise _truncated()
                    if state == _HEADER:
                        self._chunk_header(line[:-2])
                    else:
                        self._trailer_line(line[:-2])
            else:  # _DONE: nothing may follow the end of the body
                raise _truncated()
        return b"".join(out)

    def finish(self) -> Mapping[str, str]:
        """Declare the end of the body; return the trailers (lower-case names)."""
        if self._state != _DONE:
            raise _truncated()
        return dict(self._trailers)

    # -- chunk framing -----------------------------------------------------

    def _chunk_header(self, line: bytes) -> None:
        if self._signed:
            size_text, ext, signature = line.partition(_SIGNATURE_EXT)
            if not ext or len(signature) != 64 or not _HEX_DIGITS.issuperset(signature):
                raise _truncated()
            self._chunk_signature = signature
        else:
            size_text = line
        if not size_text or len(size_text) > 16 or not _HEX_DIGITS.issuperset(size_text):
            raise _truncated()
        size = int(size_text, 16)
        self._chunk_index += 1
        if size > self._max_chunk_size:
            raise S3Error(
                "InvalidArgument",
                f"Chunk size {size} exceeds the maximum of {self._max_chunk_size} bytes",
                extra={"ArgumentName": "chunk-size", "ArgumentValue": str(size)},
            )
        if size and self._previous_size is not None and self._previous_size < MIN_CHUNK_SIZE:
            raise S3Error(
                "InvalidChunkSizeError",
                extra={"Chunk": str(self._chunk_index), "BadChunkSize": str(self._previous_size)},
            )
        if self._decoded_length is not None and self._total + size > self._decoded_length:
            raise self._length_mismatch(self._total + size)
        self._previous_size = size
        if size:
            self._remaining = size
            self._state = _DATA
            return
        # The final, zero-length chunk: signed like any other, then trailers.
        self._verify_chunk()
        if self._decoded_length is not None and self._total != self._decoded_length:
            raise self._length_mismatch(self._total)
        self._state = _TRAILER

    def _end_of_chunk_data(self) -> None:
        self._total += self._previous_size or 0
        self._verify_chunk()
        self._state = _HEADER

    def _verify_chunk(self) -> None:
        if self._chunk_hash is None:
            return
        string_to_sign = (
            f"{self._prefix}{self._previous}\n{EMPTY_SHA256}\n{self._chunk_hash.hexdigest()}"
        )
        expected = sign(self._key, string_to_sign)
        if not hmac.compare_digest(expected.encode("ascii"), self._chunk_signature):
            raise S3Error("SignatureDoesNotMatch")
        self._previous = expected
        self._chunk_hash = hashlib.sha256()

    def _length_mismatch(self, provided: int) -> S3Error:
        return S3Error(
            "IncompleteBody",
            extra={
                "NumberBytesExpected": str(self._decoded_length),
                "NumberBytesProvided": str(provided),
            },
        )

    # -- trailers ----------------------------------------------------------

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_of_trailers()
            return
        if not self._expects_trailer or len(self._trailers) >= MAX_TRAILERS:
            raise _truncated()
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise S3Error(_MALFORMED_TRAILER, _MALFORMED_TRAILER_MESSAGE) from None
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise S3Error(_MALFORMED_TRAILER, _MALFORMED_TRAILER_MESSAGE)
        if name == _TRAILER_SIGNATURE and self._signed:
            if self._trailer_signature is not None:
                raise S3Error(_MALFORMED_TRAILER, _MALFORMED_TRAILER_MESSAGE)
            self._trailer_signature = value.strip()
            return
        if name in self._trailers or self._trailer_signature is not None:
            raise S3Error(_MALFORMED_TRAILER, _MALFORMED_TRAILER_MESSAGE)
        self._trailers[name] = value.strip()

    def _end_of_trailers(self) -> None:
        self._state = _DONE
        if not self._expects_trailer:
            return
        if self._signed and not self._trailers:
            # S3 answers a signed-trailer body whose trailer never came this way.
            raise _truncated()
        if set(self._trailers) != set(self._declared):
            raise S3Error(_MALFORMED_TRAILER, _MALFORMED_TRAILER_MESSAGE)
        if self._signed:
            self._verify_trailer_signature()

    def _verify_trailer_signature(self) -> None:
        provided = self._trailer_signature
        if provided is None:
            raise _truncated()
        # The signer hashes the trailer lines as it wrote them ("name:value\n");
        # with several trailers some signers sort them, so accept either order.
        orders = [list(self._trailers.items()), sorted(self._trailers.items())]
        for items in orders:
            canonical = "".join(f"{name}:{value}\n" for name, value in items)
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            expected = sign(self._key, f"{self._trailer_prefix}{self._previous}\n{digest}")
            if hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii", "replace")):
                return
        raise S3Error("SignatureDoesNotMatch")


_MALFORMED_TRAILER: Final = "MalformedTrailerError"
_MALFORMED_TRAILER_MESSAGE: Final = (
    "The request contained trailing data that was not well-formed or did not conform to "
    "our published schema."
)
