"""The upload writer: one upload streamed into a temporary file, then published.

Bytes are decoded (aws-chunked), counted against the size limits, hashed and
written as they arrive, so memory does not grow with the object.  Only a
complete, verified body is renamed into place; anything else -- a refusal,
a disk error, a client that goes away -- removes the temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from plantcdn.digests import DigestResult, PayloadDigest
from plantcdn.errors import S3Error
from plantcdn.storage import Bucket, ObjectMeta, Storage

T = TypeVar("T")

__all__ = [
    "MAX_PUT_SIZE",
    "ChunkDecoder",
    "Sink",
    "UploadWriter",
    "cooperate_cancellably",
    "pump_file",
]

#: "Upload an object in a single operation ... up to 5 GB" (S3 User Guide, "Uploading objects").
MAX_PUT_SIZE = 5 * 1024**3
READ_STEP = 256 * 1024

log = Logger()


class ChunkDecoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> object: ...


class UploadWriter:
    """Streams one upload into ``.plantcdn/tmp`` and commits it under its key."""

    def __init__(
        self,
        storage: Storage,
        bucket: Bucket,
        key: str,
        *,
        digest: PayloadDigest,
        decoder: ChunkDecoder | None = None,
        max_size: int = MAX_PUT_SIZE,
        min_size: int = 0,
    ) -> None:
        self.storage = storage
        self.bucket = bucket
        self.key = key
        self.digest = digest
        self.decoder = decoder
        self.max_size = max_size
        self.min_size = min_size
        self.size = 0
        self.done = False
        fd, self.temp = storage.new_temp(bucket)
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        """Take the next piece of the (possibly aws-chunked) body."""
        if self.done:
            return
        try:
            if self.decoder is not None:
                data = self.decoder.feed(data)
            if not data:
                return
            self.size += len(data)
            if self.size > self.max_size:
                raise S3Error(
                    "EntityTooLarge",
                    extra={"ProposedSize": str(self.size), "MaxSizeAllowed": str(self.max_size)},
                )
            self.digest.update(data)
            self._file.write(data)
        except S3Error:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _disk_error(exc) from exc

    def seal(self) -> DigestResult:
        """Verify the complete body (digests, trailers, size) and close the temporary file.

        Any refusal or disk error removes the temporary file.
        """
        try:
            trailers = self.decoder.finish() if self.decoder is not None else {}
            result = self.digest.finish(trailers if isinstance(trailers, dict) else {})
            if self.size < self.min_size:
                raise S3Error(
                    "EntityTooSmall",
                    extra={"ProposedSize": str(self.size), "MinSizeAllowed": str(self.min_size)},
                )
            self._file.flush()
            if self.storage.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        except S3Error:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _disk_error(exc) from exc
        return result

    def finish(
        self, describe: Callable[[DigestResult], ObjectMeta], *, exclusive: bool = False
    ) -> ObjectMeta:
        """Verify the complete body and publish it; *describe* builds its metadata.
        *exclusive*: only onto a free key (``If-None-Match: *``, see Storage.commit)."""
        result = self.seal()
        try:
            meta = self.storage.commit(
                self.bucket, self.key, self.temp, describe(result), exclusive=exclusive
            )
        except S3Error:
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _disk_error(exc) from exc
        self.done = True
        return meta

    def finish_durably(
        self, describe: Callable[[DigestResult], ObjectMeta], reactor: object
    ) -> Deferred[ObjectMeta]:
        """:meth:`finish`, on the reactor's thread pool when writes are fsync'ed.

        An fsync waits for the disk (milliseconds, seconds on a busy one);
        in the reactor thread it stalled every other connection, and uploads
        could not share a journal commit.  Without fsync the commit is a few
        cheap system calls and runs inline.  Only for commits that need no
        check of the current object in the same step (no conditional write):
        those stay in the reactor thread, where nothing can come between.

        The result is not cancellable: once the body is complete, the upload
        is published even if its client goes away, as S3 would.
        """
        return durably(reactor, self.storage.fsync, self.finish, describe)

    def abort(self) -> None:
        """Forget the upload: nothing of it stays on disk."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


def durably(
    reactor: object, fsync: bool, work: Callable[..., T], *args: object
) -> Deferred[T]:
    """``work(*args)``: on the reactor's thread pool when it fsyncs, else inline.

    For disk work that must not stall every other connection while it waits
    for the disk.  The result is not cancellable: work that has started on a
    thread finishes (and publishes what it publishes) even if the request's
    client goes away, as S3 completes a request whose body it has.
    """
    if not fsync or not IReactorThreads.providedBy(reactor):
        return maybeDeferred(work, *args)
    threads: Any = reactor
    running = deferToThreadPool(threads, threads.getThreadPool(), work, *args)
    shielded: Deferred[T] = Deferred()
    running.chainDeferred(shielded)
    return shielded


class Sink(Protocol):
    """Anything that takes a request body piece by piece and can forget it."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


def pump_file(
    source: IO[bytes],
    sink: Sink,
    cooperator: Cooperator,
    step: int = READ_STEP,
    until: Callable[[], bool] | None = None,
) -> Deferred[None]:
    """Feed *source* (Twisted's request spool) into *sink*, one step per turn of the
    reactor, so a large upload does not stop other requests from being served.

    *until* ends the pumping early (POST Object ignores what follows the file).
    Cancelling the returned Deferred (Klein does when the client goes away)
    stops the pump and aborts the sink, so nothing is left behind.
    """

    def steps() -> Iterator[None]:
        while until is None or not until():
            chunk = source.read(step)
            if not chunk:
                return
            sink.write(chunk)
            yield None

    return cooperate_cancellably(cooperator, steps(), on_stop=sink.abort)


def cooperate_cancellably(
    cooperator: Cooperator, work: Iterator[None], on_stop: Callable[[], None]
) -> Deferred[None]:
    """Run *work* one step per reactor turn; a Deferred for its end.

    Cancelling the Deferred (Klein does when the client goes away) stops the
    work and calls *on_stop*, as does a failing step, so the caller's
    temporary files are removed whichever way the work ends early.
    """
    task = cooperator.cooperate(work)

    def cancel(_: Deferred[None]) -> None:
        with contextlib.suppress(Exception):
            task.stop()
        on_stop()

    result: Deferred[None] = Deferred(cancel)

    def done(_: object) -> None:
        if not result.called:
            result.callback(None)

    def failed(failure: Failure) -> None:
        on_stop()
        if not result.called:
            result.errback(failure)

    task.whenDone().addCallbacks(done, failed)
    return result


def _disk_error(exc: OSError) -> S3Error:
    """Disk trouble is the server's fault: a 5xx the client may retry, never a traceback.

    The exception is a key whose segment is longer than a file name may be
    (S3 takes 1024-byte segments; a file system 255): the key's fault, a 400.
    """
    if exc.errno == errno.ENAMETOOLONG:
        return S3Error(
            "KeyTooLongError",
            "Your key is too long: each '/'-separated segment of a key is a file or "
            "folder name, and this one is longer than the file system allows",
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        log.error("disk full while writing an upload: {error}", error=str(exc))
        return S3Error("SlowDown", "Please reduce your request rate. (storage is full)")
    log.error("write error while storing an upload: {error}", error=str(exc))
    return S3Error("InternalError")
