"""Disk faults: a full disk or a failing write answers a 5xx S3 error and leaves nothing.

The in-process cases run the real site (``make_site``: PlantRequest streaming,
the Klein app, the writer) on a loopback port of the test's reactor and inject
the fault by wrapping the upload's temporary file, so they need neither root
nor a special filesystem: ``ENOSPC`` -> 503 ``SlowDown``, ``EIO`` -> 500
``InternalError``.  One case, skipped unless this process may mount (root),
runs the daemon over a 4 MiB tmpfs and fills it for real.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
import pytest_twisted
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot, temp_files, wait_until
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from plantcdn import multipart, storage, writer
from plantcdn.config import Config
from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY
from plantcdn.service import make_site
from plantcdn.storage import Storage

MiB = 1024 * 1024


class FailingFile:
    """An upload's temporary file whose writes fail with *code* once *after* bytes are in."""

    def __init__(self, real: IO[bytes], after: int, code: int) -> None:
        self.real = real
        self.after = after
        self.code = code
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self.after:
            raise OSError(self.code, os.strerror(self.code))
        return self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Faults:
    """Switches for the injected disk faults (all off: the disk works again)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.write_error: int | None = None
        self.after = 64 * 1024
        real_fdopen = os.fdopen
        faults = self

        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            real = real_fdopen(fd, *args, **kwargs)
            if faults.write_error is None:
                return real
            return FailingFile(real, faults.after, faults.write_error)

        class WriterOs:
            """``os`` as plantcdn.writer sees it: fdopen wrapped, the rest untouched."""

            def __getattr__(self, name: str) -> Any:
                return fdopen if name == "fdopen" else getattr(os, name)

        monkeypatch.setattr(writer, "os", WriterOs())


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


@pytest.fixture
def site_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The real site on a loopback port of this process's reactor; (url, data dir)."""
    config = Config(data_dir=tmp_path, fsync=False)
    store = Storage(config)
    store.prepare()
    port: Any = reactor.listenTCP(0, make_site(config, store, reactor), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", tmp_path
    pytest_twisted.blockon(port.stopListening())


def _client(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name=REGION,
        aws_access_key_id=DEV_ACCESS_KEY_ID, aws_secret_access_key=DEV_SECRET_ACCESS_KEY,
        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                          retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=10, read_timeout=30,
                          request_checksum_calculation="when_required"),
    )


def _read(s3: Any, bucket: str, key: str) -> bytes:
    """GET and read the body (in a thread: the server shares this process's reactor)."""
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _error(call: Callable[[], Any]) -> tuple[int, str]:
    try:
        call()
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def _left_nothing(data: Path, bucket: str, before: dict[str, bytes]) -> None:
    folder = data / ("s3_inbox" if bucket == INBOX else "s3_longterm")
    assert wait_until(lambda: temp_files(folder) == []), temp_files(folder)
    assert snapshot(folder) == before


@pytest.mark.parametrize(("code", "status", "s3_code"), [
    (errno.ENOSPC, 503, "SlowDown"),
    (errno.EDQUOT, 503, "SlowDown"),
    (errno.EIO, 500, "InternalError"),
])
@pytest_twisted.ensureDeferred
async def test_write_error_during_put_answers_5xx_and_leaves_nothing(
    site_url: tuple[str, Path], faults: Faults, code: int, status: int, s3_code: str
) -> None:
    """A write failing mid-body answers S3's 5xx XML error; no object, no temporary file;
    the same PUT succeeds once the disk works again."""
    url, data = site_url
    s3 = _client(url)
    key = f"company_1/plant_1/{uuid.uuid4().hex}.bin"
    before = snapshot(data / "s3_longterm")
    faults.write_error = code
    body = os.urandom(2 * MiB)
    got = await deferToThread(_error, lambda: s3.put_object(Bucket=LONGTERM, Key=key, Body=body))
    assert got == (status, s3_code)
    _left_nothing(data, LONGTERM, before)
    faults.write_error = None  # space returns
    await deferToThread(s3.put_object, Bucket=LONGTERM, Key=key, Body=body)
    assert await deferToThread(_read, s3, LONGTERM, key) == body


@pytest_twisted.ensureDeferred
async def test_write_error_during_post_answers_503(
    site_url: tuple[str, Path], faults: Faults
) -> None:
    """A presigned POST whose file cannot be written: 503 SlowDown XML, nothing kept."""
    url, data = site_url
    s3 = _client(url)
    key = f"company_1/plant_2/{uuid.uuid4().hex}.jpg"
    post = s3.generate_presigned_post(INBOX, key)
    before = snapshot(data / "s3_inbox")
    faults.write_error = errno.ENOSPC
    response = await deferToThread(
        requests.post, post["url"], data=post["fields"],
        files={"file": ("a.jpg", os.urandom(MiB))}, timeout=30,
    )
    assert response.status_code == 503
    assert b"<Code>SlowDown</Code>" in response.content
    _left_nothing(data, INBOX, before)


@pytest_twisted.ensureDeferred
async def test_disk_errors_in_multipart_answer_5xx(
    site_url: tuple[str, Path], faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UploadPart that cannot write its part: 503; CompleteMultipartUpload that cannot
    assemble: 503; the upload is still there to be completed once the disk recovers."""
    url, data = site_url
    s3 = _client(url)
    key = f"company_1/plant_3/{uuid.uuid4().hex}.bin"
    before = snapshot(data / "s3_inbox")
    upload = await deferToThread(s3.create_multipart_upload, Bucket=INBOX, Key=key)
    upload_id = upload["UploadId"]
    body = os.urandom(MiB)

    def part() -> Any:
        return s3.upload_part(Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1, Body=body)

    faults.write_error = errno.ENOSPC
    assert await deferToThread(_error, part) == (503, "SlowDown")
    _left_nothing(data, INBOX, before)
    faults.write_error = None
    etag = (await deferToThread(part))["ETag"]

    real_copy = multipart._copy_chunk

    def full(source: int, target: int, size: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(multipart, "_copy_chunk", full)

    def complete() -> Any:
        return s3.complete_multipart_upload(
            Bucket=INBOX, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )

    assert await deferToThread(_error, complete) == (503, "SlowDown")
    _left_nothing(data, INBOX, before)
    monkeypatch.setattr(multipart, "_copy_chunk", real_copy)
    await deferToThread(complete)
    assert await deferToThread(_read, s3, INBOX, key) == body


@pytest_twisted.ensureDeferred
async def test_failing_commit_answers_5xx_and_leaves_nothing(
    site_url: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final rename failing (EIO) is a 500 InternalError; the temporary file is removed."""
    url, data = site_url
    s3 = _client(url)
    key = f"company_1/plant_4/{uuid.uuid4().hex}.bin"
    before = snapshot(data / "s3_longterm")
    real_replace = os.replace

    class StorageOs:
        def __getattr__(self, name: str) -> Any:
            if name == "replace":
                return failing_replace
            return getattr(os, name)

    def failing_replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if str(src).endswith(".part") and "/tmp/" in str(src):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(storage, "os", StorageOs())
    got = await deferToThread(
        _error, lambda: s3.put_object(Bucket=LONGTERM, Key=key, Body=b"c" * 1000)
    )
    assert got == (500, "InternalError")
    _left_nothing(data, LONGTERM, before)


# -- a real full filesystem (root only) ---------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (skipped where mounting is not allowed)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "plantcdn-test", str(mount_point)],
        capture_output=True, timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def test_full_filesystem_answers_503_and_recovers(
    tiny_fs: Path, start_server: Callable[..., RunningServer]
) -> None:
    """On a 4 MiB filesystem: a 6 MiB PUT gets 503 SlowDown and leaves nothing; a filler
    file taking the space makes a small PUT fail too; removing it, the same PUT succeeds."""
    server = start_server(data_dir=tiny_fs, PLANTCDN_FSYNC="true")
    s3: Any = server.client()
    before = snapshot(server.bucket_dir(LONGTERM))
    status = _error(lambda: s3.put_object(
        Bucket=LONGTERM, Key="company_1/plant_1/big.bin", Body=b"b" * (6 * MiB)))
    assert status == (503, "SlowDown")
    _left_nothing(tiny_fs, LONGTERM, before)
    filler = tiny_fs / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"f" * 65536)
                out.flush()
        except OSError:
            pass
    small = b"s" * 200_000
    status = _error(lambda: s3.put_object(
        Bucket=LONGTERM, Key="company_1/plant_1/small.bin", Body=small))
    assert status == (503, "SlowDown")
    _left_nothing(tiny_fs, LONGTERM, before)
    filler.unlink()  # space returns
    s3.put_object(Bucket=LONGTERM, Key="company_1/plant_1/small.bin", Body=small)
    assert s3.get_object(Bucket=LONGTERM, Key="company_1/plant_1/small.bin")["Body"].read() \
        == small
