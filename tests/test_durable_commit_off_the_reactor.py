"""fsync'ed commits run on the reactor's thread pool; unsynced ones inline.

The reactor here is a stand-in that provides ``IReactorThreads`` with a
pool recording what it was asked to run (and running it at once), so the
test needs no threads and no sleeping.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.interfaces import IReactorThreads
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from plantcdn.config import Config
from plantcdn.digests import DigestResult, PayloadDigest
from plantcdn.storage import ObjectMeta, Storage
from plantcdn.writer import UploadWriter

KEY = "company_1/plant_2/photo.webp"


class _RecordingPool:
    def __init__(self) -> None:
        self.ran: list[Callable[..., Any]] = []

    def callInThreadWithCallback(  # noqa: N802
        self, on_result: Callable[[bool, Any], None], fn: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        self.ran.append(fn)
        try:
            result = fn(*a, **kw)
        except BaseException as exc:  # noqa: BLE001 - handed to the Deferred, as Twisted does
            from twisted.python.failure import Failure

            on_result(False, Failure(exc))
            return
        on_result(True, result)


@implementer(IReactorThreads)
class _Reactor:
    def __init__(self) -> None:
        self.pool = _RecordingPool()

    def getThreadPool(self) -> _RecordingPool:  # noqa: N802
        return self.pool

    def callFromThread(self, fn: Callable[..., Any], *a: Any, **kw: Any) -> None:  # noqa: N802
        fn(*a, **kw)


def _writer(tmp_path: Path, *, fsync: bool, body: bytes) -> tuple[Storage, UploadWriter]:
    storage = Storage(Config(data_dir=tmp_path, fsync=fsync))
    storage.prepare()
    bucket = storage.bucket("plantdb-longterm")
    writer = UploadWriter(storage, bucket, KEY, digest=PayloadDigest())
    writer.write(body)
    return storage, writer


def _describe(result: DigestResult) -> ObjectMeta:
    return ObjectMeta(etag=f'"{result.md5_hex}"', size=result.size, last_modified=1.7e9)


@pytest.mark.parametrize("fsync", [True, False])
def test_commit_runs_on_the_pool_only_when_fsync_is_on(tmp_path: Path, fsync: bool) -> None:
    body = os.urandom(70_000)
    storage, writer = _writer(tmp_path, fsync=fsync, body=body)
    reactor = _Reactor()
    meta = SynchronousTestCase().successResultOf(writer.finish_durably(_describe, reactor))
    assert meta.etag == f'"{hashlib.md5(body).hexdigest()}"'
    assert (storage.bucket("plantdb-longterm").root / KEY).read_bytes() == body
    assert len(reactor.pool.ran) == (1 if fsync else 0)


def test_a_client_gone_after_its_body_does_not_unpublish_it(tmp_path: Path) -> None:
    """Cancelling the wait (the client went away) leaves the commit to finish."""
    storage, writer = _writer(tmp_path, fsync=True, body=b"kept")
    reactor = _Reactor()
    pending: list[Callable[[], None]] = []
    run_now = reactor.pool.callInThreadWithCallback
    reactor.pool.callInThreadWithCallback = (  # type: ignore[method-assign]
        lambda *a, **kw: pending.append(lambda: run_now(*a, **kw))
    )
    waiting = writer.finish_durably(_describe, reactor)
    waiting.cancel()
    SynchronousTestCase().failureResultOf(waiting)
    pending[0]()  # the pool gets round to it
    assert (storage.bucket("plantdb-longterm").root / KEY).read_bytes() == b"kept"


def test_a_refused_body_fails_the_deferred_and_leaves_nothing(tmp_path: Path) -> None:
    storage = Storage(Config(data_dir=tmp_path, fsync=True))
    storage.prepare()
    bucket = storage.bucket("plantdb-longterm")
    writer = UploadWriter(
        storage, bucket, KEY, digest=PayloadDigest(content_sha256="0" * 64)
    )
    writer.write(b"not what was signed")
    failure = SynchronousTestCase().failureResultOf(writer.finish_durably(_describe, _Reactor()))
    assert failure.value.code == "XAmzContentSHA256Mismatch"
    assert not (bucket.root / KEY).exists()
    assert list(bucket.tmp_dir.iterdir()) == []
