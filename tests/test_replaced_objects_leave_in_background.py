"""A large object that is overwritten or deleted is unlinked off the answering thread.

Freeing a GiB of written-back blocks took ext4 about 0.6 s, all of it spent
in the reactor thread before the overwrite or delete was answered. The file
now leaves its key at once (swapped out, or renamed into ``.plantcdn/tmp``)
and a reaper thread unlinks it; small ones are still unlinked inline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import RunningServer, temp_files, wait_until
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, globalLogPublisher

from plantcdn.config import Config
from plantcdn.reaper import BACKGROUND_SIZE, Reaper
from plantcdn.storage import _RENAMEAT2, ObjectMeta, Storage
from plantcdn.uploads import _GONE_PREFIX

KEY = "company_1/plant_2/photo.webp"
INBOX = "plantdb-inbox"


def _storage(tmp_path: Path, background_size: int) -> Storage:
    storage = Storage(Config(data_dir=tmp_path, fsync=False))
    storage.prepare()
    storage.reaper = Reaper(background_size)
    return storage


def _put(storage: Storage, body: bytes) -> None:
    bucket = storage.bucket(INBOX)
    fd, temp = storage.new_temp(bucket)
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    meta = ObjectMeta(etag='"e"', size=len(body), last_modified=1.7e9)
    storage.commit(bucket, KEY, temp, meta)


class _HeldUnlink:
    """os.unlink that blocks the reaper's thread until released (the main thread never)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.held: list[str] = []
        real = os.unlink

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            if threading.current_thread().name == "plantcdn-reaper":
                self.held.append(str(path))
                self.release.wait(10)
            real(path, *args, **kwargs)

        monkeypatch.setattr("plantcdn.reaper.os.unlink", unlink)


@pytest.mark.skipif(_RENAMEAT2 is None, reason="no renameat2: overwrites use os.replace")
def test_an_overwritten_large_object_is_answered_before_its_old_bytes_are_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _storage(tmp_path, background_size=1000)
    held = _HeldUnlink(monkeypatch)
    _put(storage, b"old" * 1000)
    _put(storage, b"new" * 1000)  # returns although the reaper is stuck on the old file
    bucket = storage.bucket(INBOX)
    assert (bucket.root / KEY).read_bytes() == b"new" * 1000
    assert wait_until(lambda: len(held.held) == 1)
    assert [p.read_bytes() for p in bucket.tmp_dir.iterdir()] == [b"old" * 1000]
    held.release.set()
    assert wait_until(lambda: storage.reaper.pending == 0)
    assert list(bucket.tmp_dir.iterdir()) == []


def test_a_deleted_large_object_leaves_its_key_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _storage(tmp_path, background_size=1000)
    held = _HeldUnlink(monkeypatch)
    _put(storage, b"x" * 5000)
    bucket = storage.bucket(INBOX)
    assert storage.delete(bucket, KEY)
    assert not (bucket.root / KEY).exists()
    assert storage.find(bucket, KEY) is None
    assert not (bucket.root / "company_1").exists()  # emptied folders pruned as before
    assert wait_until(lambda: len(held.held) == 1)
    held.release.set()
    assert wait_until(lambda: storage.reaper.pending == 0)
    assert list(bucket.tmp_dir.iterdir()) == []


def test_small_objects_are_unlinked_inline(tmp_path: Path) -> None:
    storage = _storage(tmp_path, background_size=BACKGROUND_SIZE)
    bucket = storage.bucket(INBOX)
    _put(storage, b"a" * 100)
    _put(storage, b"b" * 100)
    assert list(bucket.tmp_dir.iterdir()) == []  # no waiting: nothing was handed over
    assert storage.delete(bucket, KEY)
    assert list(bucket.tmp_dir.iterdir()) == []
    assert storage.reaper.pending == 0


def test_large_overwrites_and_deletes_through_s3_leave_nothing_behind(
    server: RunningServer, tenant: str
) -> None:
    """boto3 sees the new bytes and NoSuchKey at once; the old files go soon after."""
    s3: Any = server.client()
    big = BACKGROUND_SIZE + 1
    key, gone = f"{tenant}/big.bin", f"{tenant}/gone.bin"
    s3.put_object(Bucket=INBOX, Key=key, Body=b"1" * big)
    s3.put_object(Bucket=INBOX, Key=key, Body=b"2" * big)
    s3.put_object(Bucket=INBOX, Key=gone, Body=b"3" * big)
    s3.delete_object(Bucket=INBOX, Key=gone)
    body = s3.get_object(Bucket=INBOX, Key=key)["Body"].read()
    assert body == b"2" * big
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=INBOX, Key=gone)
    assert wait_until(lambda: temp_files(server.bucket_dir(INBOX)) == [])


def test_a_folder_handed_over_is_removed_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What UploadStore.remove hands over once an upload's folder is renamed away."""
    held = _HeldUnlink(monkeypatch)
    gone = tmp_path / "gone-upload"
    gone.mkdir()
    for number in range(3):
        (gone / f"part-{number}").write_bytes(b"p" * 100)
    reaper = Reaper()
    reaper.remove_tree(gone)  # returns although the thread is held on the first part
    assert wait_until(lambda: len(held.held) == 1)
    assert gone.exists()
    held.release.set()
    assert wait_until(lambda: not gone.exists())
    assert reaper.pending == 0


def test_completed_and_aborted_uploads_leave_no_parts_behind(
    server: RunningServer, tenant: str
) -> None:
    s3: Any = server.client()
    uploads = server.bucket_dir(INBOX) / ".plantcdn" / "multipart"
    ids = []
    for finish in ("complete", "abort"):
        key = f"{tenant}/{finish}.bin"
        upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
        ids.append(upload_id)
        part = s3.upload_part(Bucket=INBOX, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x")
        if finish == "complete":
            s3.complete_multipart_upload(
                Bucket=INBOX, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            )
        else:
            s3.abort_multipart_upload(Bucket=INBOX, Key=key, UploadId=upload_id)
        with pytest.raises(s3.exceptions.NoSuchUpload):  # gone at once
            s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id)

    def left() -> list[str]:  # ours, or removals (renamed "gone" folders) not yet done
        names = [p.name for p in uploads.iterdir()]
        return [n for n in names if n in ids or n.startswith(_GONE_PREFIX)]

    assert wait_until(lambda: left() == [])


def test_a_large_object_is_deleted_even_without_a_tmp_folder(tmp_path: Path) -> None:
    """Someone removed .plantcdn/tmp: the delete unlinks the object where it is."""
    storage = _storage(tmp_path, background_size=1000)
    _put(storage, b"x" * 5000)
    bucket = storage.bucket(INBOX)
    bucket.tmp_dir.rmdir()
    assert storage.delete(bucket, KEY)
    assert not (bucket.root / KEY).exists()
    assert storage.reaper.pending == 0


def test_a_removal_a_previous_run_began_is_finished_at_start(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """A crash between the rename of an upload's folder and its removal leaves a gone
    folder full of parts; the next start hands it to the reaper."""
    first = start_server()
    data = first.data_dir
    first.stop()
    uploads = first.bucket_dir(INBOX) / ".plantcdn" / "multipart"
    gone = uploads / f"{_GONE_PREFIX}0123456789abcdef"
    gone.mkdir(parents=True)
    (gone / "part-00001").write_bytes(b"p" * 1000)
    start_server(data_dir=data)
    assert wait_until(lambda: not gone.exists())


@pytest_twisted.ensureDeferred
async def test_a_failed_removal_is_logged_from_the_reactor_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log observers are written from one thread only: the reaper hands its warning over."""
    seen: list[tuple[str, str]] = []

    def observer(event: LogEvent) -> None:
        if "could not remove" in event.get("log_format", ""):
            seen.append((event["path"], threading.current_thread().name))

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("plantcdn.reaper.os.unlink", unlink)
    globalLogPublisher.addObserver(observer)
    try:
        Reaper(background_size=0).remove(tmp_path / "stuck.bin", 1)
        for _ in range(200):
            if seen:
                break
            await deferLater(reactor, 0.01, lambda: None)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert seen == [(str(tmp_path / "stuck.bin"), threading.main_thread().name)]
