"""Crash safety: ``kill -9`` mid-upload never loses an acknowledged object nor shows a torn one.

The harness starts the real daemon with ``PLANTCDN_FSYNC=true``, runs uploads
(PutObject, presigned POST, multipart) from threads, kills the process with
SIGKILL while some are in flight, restarts it over the same folders, and checks
what a client (and a person looking at the folders) sees.  A process kill does
not drop the page cache, so it proves the *ordering* of the writes (temporary
file, metadata, rename); the fsync calls that make the same order hold across
a power cut are checked in-process, by recording them.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import BotoCoreError, ClientError
from conftest import INBOX, LONGTERM, RunningServer, snapshot, temp_files, wait_until

from plantcdn.config import Config
from plantcdn.digests import PayloadDigest
from plantcdn.storage import Storage
from plantcdn.uploads import UploadState, UploadStore
from plantcdn.writer import UploadWriter

CRASHES = 3
UPLOADS_PER_ROUND = 24
THREADS = 12


@dataclass
class Upload:
    """One upload of the run: what was sent and what the server answered."""

    kind: str  # "put", "post" or "multipart"
    bucket: str
    key: str
    body: bytes
    acked_etag: str | None = None

    @property
    def expected_etag(self) -> str:
        md5 = hashlib.md5(self.body).hexdigest()
        if self.kind == "multipart":  # one part: md5 of the part's md5, "-1"
            return f'"{hashlib.md5(bytes.fromhex(md5)).hexdigest()}-1"'
        return f'"{md5}"'


def _client(server: RunningServer) -> Any:
    return server.client(connect_timeout=5, read_timeout=30)


def _run_upload(server: RunningServer, s3: Any, upload: Upload) -> str:
    """Send *upload*; the ETag of the success answer (raises on anything else)."""
    if upload.kind == "put":
        return str(s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.body)["ETag"])
    if upload.kind == "post":
        post = s3.generate_presigned_post(upload.bucket, upload.key, ExpiresIn=300)
        response = requests.post(
            post["url"], data=post["fields"], files={"file": ("f.bin", upload.body)}, timeout=30
        )
        if response.status_code != 204:
            raise RuntimeError(f"POST answered {response.status_code}")
        return response.headers["ETag"]
    created = s3.create_multipart_upload(Bucket=upload.bucket, Key=upload.key)
    part = s3.upload_part(
        Bucket=upload.bucket, Key=upload.key, UploadId=created["UploadId"], PartNumber=1,
        Body=upload.body,
    )
    done = s3.complete_multipart_upload(
        Bucket=upload.bucket, Key=upload.key, UploadId=created["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    return str(done["ETag"])


def _round(server: RunningServer, uploads: list[Upload], kill_after: int) -> int:
    """Run *uploads* from threads and SIGKILL the daemon once *kill_after* are acknowledged.

    Returns how many were acknowledged before the kill took effect.
    """
    queue = list(uploads)
    lock = threading.Lock()
    acked = threading.Semaphore(0)
    count = [0]

    def worker() -> None:
        s3 = _client(server)
        while True:
            with lock:
                if not queue:
                    return
                upload = queue.pop()
            try:
                etag = _run_upload(server, s3, upload)
            except (BotoCoreError, ClientError, requests.RequestException, RuntimeError,
                    OSError):
                continue  # not acknowledged: the server died under it (or refused it)
            with lock:
                upload.acked_etag = etag
                count[0] += 1
            acked.release()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in range(kill_after):
        if not acked.acquire(timeout=60):
            break
    server.process.kill()  # SIGKILL, to the PID we started
    server.process.wait(10)
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return count[0]


def _uploads(rng: random.Random, round_no: int) -> list[Upload]:
    result = []
    for i in range(UPLOADS_PER_ROUND):
        kind = ("put", "post", "multipart")[i % 3]
        bucket = INBOX if kind == "post" or i % 2 else LONGTERM
        size = rng.choice([0, 1, 1000, 64 * 1024, 300 * 1024, 1024 * 1024 + 7])
        if kind == "post":
            size = max(size, 1)
        body = rng.randbytes(size)
        key = f"company_{round_no + 1}/plant_{i}/{kind}-{hashlib.md5(body).hexdigest()[:8]}"
        result.append(Upload(kind, bucket, key, body))
    return result


def test_acknowledged_uploads_survive_sigkill_and_nothing_torn_is_visible(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    """After 3 SIGKILLs during concurrent uploads, every acknowledged upload has its bytes
    and ETag, every visible file is a complete body we sent, and tmp/ is emptied at start."""
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    data = tmp_path / "data"
    every: list[Upload] = []
    leftovers_seen = 0
    server = start_server(data_dir=data, PLANTCDN_FSYNC="true")
    for round_no in range(CRASHES):
        uploads = _uploads(rng, round_no)
        every += uploads
        # Killed once a random number of uploads were answered: others are in flight.
        _round(server, uploads, kill_after=rng.randint(4, UPLOADS_PER_ROUND - THREADS // 2))
        inbox, longterm = server.bucket_dir(INBOX), server.bucket_dir(LONGTERM)
        leftovers_seen += len(temp_files(inbox)) + len(temp_files(longterm))
        # A leftover is guaranteed, whatever moment the kill hit.
        (inbox / ".plantcdn" / "tmp" / "planted.part").write_bytes(b"half an upload")
        server = start_server(data_dir=data, PLANTCDN_FSYNC="true")
        assert temp_files(inbox) == [] and temp_files(longterm) == [], "tmp/ cleaned at start"

    bodies = {(u.bucket, u.key): u for u in every}
    s3 = _client(server)
    for bucket in (INBOX, LONGTERM):
        for rel, content in snapshot(server.bucket_dir(bucket)).items():
            upload = bodies.get((bucket, rel))
            assert upload is not None, f"unexpected file visible as a key: {bucket}/{rel}"
            assert content == upload.body, f"torn object visible: {bucket}/{rel}"
            head = s3.head_object(Bucket=bucket, Key=rel)
            assert head["ETag"] == upload.expected_etag, f"{bucket}/{rel}: metadata of another body"
    acked = [u for u in every if u.acked_etag is not None]
    for upload in acked:
        got = s3.get_object(Bucket=upload.bucket, Key=upload.key)
        assert got["Body"].read() == upload.body, f"acknowledged upload lost: {upload.key}"
        assert got["ETag"] == upload.acked_etag == upload.expected_etag
    kinds = {u.kind for u in acked}
    print(
        f"crash safety (seed {seed}): {len(every)} uploads sent, {len(acked)} acknowledged "
        f"({', '.join(sorted(kinds))}), {len(acked)}/{len(acked)} verified after {CRASHES} "
        f"SIGKILLs; {leftovers_seen} temporary file(s) left by the kills, all removed at start"
    )
    assert len(acked) >= CRASHES * 2
    assert wait_until(lambda: server.process.poll() is None)


# -- the fsync calls themselves ---------------------------------------------------------


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Records ``("fsync", path)``, ``("setxattr", path)`` and ``("replace", target)``
    in the order they happen."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        real_replace(src, dst, **kwargs)
        events.append(("replace", str(dst)))

    if hasattr(os, "setxattr"):
        real_setxattr = os.setxattr

        def setxattr(path: Any, *args: Any, **kwargs: Any) -> None:
            real_setxattr(path, *args, **kwargs)
            events.append(("setxattr", str(path)))

        monkeypatch.setattr(os, "setxattr", setxattr)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_fsync_true_syncs_bytes_metadata_and_folders_before_the_answer(
    tmp_path: Path, synced: list[tuple[str, str]]
) -> None:
    """With fsync on, the bytes, the metadata and every new folder are synced before the
    object's rename, and the object's folder right after it."""
    storage = Storage(Config(data_dir=tmp_path, fsync=True))
    storage.prepare()
    bucket = storage.bucket(LONGTERM)
    writer = UploadWriter(storage, bucket, "company_1/plant_2/a.bin", digest=PayloadDigest())
    temp = str(writer.temp)
    writer.write(b"hello")
    writer.finish(lambda result: _meta(result.md5_hex, result.size))
    target = str(bucket.root / "company_1" / "plant_2" / "a.bin")
    rename = synced.index(("replace", target))
    before = [path for kind, path in synced[:rename] if kind == "fsync"]
    after = [path for kind, path in synced[rename:] if kind == "fsync"]
    assert temp in before, "the bytes are synced before they are published"
    for folder in (bucket.root, bucket.root / "company_1"):
        assert str(folder) in before, f"new folder entry synced: {folder}"
    assert str(bucket.root / "company_1" / "plant_2") in after, "the rename itself is synced"
    if _has_xattr_meta(target):
        set_at = synced.index(("setxattr", temp))
        assert ("fsync", temp) in synced[set_at:rename], "the metadata xattr is synced too"
    else:
        meta_syncs = [p for p in before if "/.plantcdn/meta/" in p]
        assert meta_syncs, "the metadata sidecar (and its folder) are synced before the rename"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_fsync_true_syncs_deletes_and_finished_uploads_before_the_answer(
    tmp_path: Path, synced: list[tuple[str, str]]
) -> None:
    """An acknowledged DeleteObject, and a completed or aborted multipart upload, stay
    gone after a power cut: the folder that lost the name (or, when the delete pruned
    it, its nearest remaining parent) is synced once, before the answer."""
    storage = Storage(Config(data_dir=tmp_path, fsync=True))
    storage.prepare()
    bucket = storage.bucket(LONGTERM)
    for name in ("a.bin", "b.bin"):
        writer = UploadWriter(storage, bucket, f"company_1/plant_2/{name}", digest=PayloadDigest())
        writer.write(b"hello")
        writer.finish(lambda result: _meta(result.md5_hex, result.size))
    synced.clear()
    assert storage.delete(bucket, "company_1/plant_2/a.bin")
    assert storage.delete(bucket, "company_1/plant_2/b.bin")  # prunes both folders
    storage.sync_removals(bucket, ["company_1/plant_2/a.bin", "company_1/plant_2/b.bin"])
    assert [e for e in synced if e[0] == "fsync"] == [("fsync", str(bucket.root))]

    uploads = UploadStore(fsync=True, reaper=storage.reaper)
    state = UploadState(
        upload_id="a" * 32, key="company_1/plant_2/c.bin", initiated=0.0, initiator="test"
    )
    uploads.create(bucket, state)
    synced.clear()
    uploads.remove(bucket, state.upload_id)
    uploads.sync_removal(bucket)
    assert ("fsync", str(uploads.root(bucket))) in synced
    assert wait_until(lambda: storage.reaper.pending == 0)


def test_fsync_false_never_syncs(tmp_path: Path, synced: list[tuple[str, str]]) -> None:
    """``PLANTCDN_FSYNC=false`` trades durability for speed: no fsync at all."""
    storage = Storage(Config(data_dir=tmp_path, fsync=False))
    storage.prepare()
    bucket = storage.bucket(INBOX)
    writer = UploadWriter(storage, bucket, "company_1/plant_2/b.bin", digest=PayloadDigest())
    writer.write(b"x")
    writer.finish(lambda result: _meta(result.md5_hex, result.size))
    assert [e for e in synced if e[0] == "fsync"] == []


def _meta(md5_hex: str, size: int) -> Any:
    from plantcdn.storage import ObjectMeta

    return ObjectMeta(etag=f'"{md5_hex}"', size=size, last_modified=0.0)


def _has_xattr_meta(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "user.plantcdn.meta"))
    except (OSError, AttributeError):
        return False

