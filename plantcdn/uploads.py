"""Multipart uploads on disk: the state of each upload and its parts.

Layout, inside the bucket's own ``.plantcdn`` folder (never addressable as a
key, and on the same filesystem as the objects, so every move is a rename)::

    .plantcdn/multipart/<upload-id>/upload.json             who, which key, final headers
    .plantcdn/multipart/<upload-id>/part-00001.json         the current record of part 1
    .plantcdn/multipart/<upload-id>/part-00001.<rand>.bin   the bytes that record names

A part's bytes are streamed into ``.plantcdn/tmp`` (cleared at start),
renamed into the upload folder under a fresh name, and only then published
by atomically replacing ``part-NNNNN.json`` to point at them.  Two concurrent
uploads of the same part number therefore never mix: whichever replaces the
record last wins, and a reader sees one complete part or the other.

Nothing here is cleared at start: an upload abandoned by a client (or by a
restart) stays listable with ListMultipartUploads until it is completed or
aborted, as on S3.  Abort first renames the folder out of the way, so an
upload disappears atomically even if removing its files is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from attrs import evolve, field, frozen

from plantcdn.errors import S3Error
from plantcdn.reaper import Reaper
from plantcdn.storage import (
    Bucket,
    fsync_dir,
    record_from_json,
    record_to_json,
    write_atomically,
)

__all__ = [
    "MAX_PART_NUMBER",
    "PartRecord",
    "UploadState",
    "UploadStore",
    "new_upload_id",
]

#: "Part numbers ... 1 to 10,000 (inclusive)" (S3 User Guide, "Amazon S3 multipart upload limits").
MAX_PART_NUMBER = 10_000

_UPLOADS_DIR = "multipart"
_STATE_FILE = "upload.json"
_GONE_PREFIX = ".gone-"
#: What :func:`new_upload_id` produces; anything else cannot name a folder of ours.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{32,128}")
_PART_RECORD = re.compile(r"part-(\d{5})\.json")


def new_upload_id() -> str:
    """An unguessable upload id (S3's are opaque; knowing one is enough to add parts)."""
    return secrets.token_urlsafe(48)


@frozen
class UploadState:
    """One multipart upload as CreateMultipartUpload recorded it.

    ``object_fields`` holds the :class:`~plantcdn.storage.ObjectMeta` fields the
    final object inherits from the Create request (Content-Type, metadata, ACL...).
    """

    upload_id: str
    key: str
    initiated: float
    initiator: str
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    object_fields: Mapping[str, Any] = field(factory=dict)

    def to_json(self) -> bytes:
        return record_to_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> UploadState:
        return record_from_json(cls, data)


@frozen
class PartRecord:
    """One uploaded part: what ListParts shows and CompleteMultipartUpload checks."""

    number: int
    etag: str  # quoted md5 of the part's bytes
    size: int
    last_modified: float
    data: str  # name of the file holding the bytes, inside the upload folder
    checksums: Mapping[str, str] = field(factory=dict)  # "CRC32" -> base64

    def to_json(self) -> bytes:
        return record_to_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> PartRecord:
        return record_from_json(cls, data)


def _no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", extra={"UploadId": upload_id})


class UploadStore:
    """The multipart uploads of every bucket: plain files, no state in memory.

    Because nothing is cached, a restarted daemon (or a second one over the
    same folders) sees exactly the uploads and parts that are on disk.
    """

    def __init__(self, *, fsync: bool, reaper: Reaper) -> None:
        self.fsync = fsync
        self.reaper = reaper  # the storage's: one thread per process removes what is gone

    # -- where things are ----------------------------------------------------

    def root(self, bucket: Bucket) -> Path:
        return bucket.internal / _UPLOADS_DIR

    def folder(self, bucket: Bucket, upload_id: str) -> Path:
        """The folder of *upload_id*; a malformed id can never name a path of ours."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise _no_such_upload(upload_id)
        return self.root(bucket) / upload_id

    # -- uploads --------------------------------------------------------------

    def create(self, bucket: Bucket, state: UploadState) -> UploadState:
        """Make the upload's folder and record its state (the record makes it exist)."""
        folder = self.folder(bucket, state.upload_id)
        folder.mkdir(parents=True)
        self._write_atomic(folder / _STATE_FILE, state.to_json())
        if self.fsync:
            # The record's name, the upload's folder, and multipart/ itself (maybe new).
            for created in (folder, folder.parent, folder.parent.parent):
                fsync_dir(created)
        return state

    def load(self, bucket: Bucket, upload_id: str, key: str | None = None) -> UploadState:
        """The upload *upload_id* (of *key*, when given), or 404 ``NoSuchUpload``."""
        path = self.folder(bucket, upload_id) / _STATE_FILE
        try:
            state = UploadState.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError):
            raise _no_such_upload(upload_id) from None
        if state.upload_id != upload_id or (key is not None and state.key != key):
            raise _no_such_upload(upload_id)
        return state

    def iter_uploads(self, bucket: Bucket) -> Iterator[UploadState]:
        """Every upload in progress (unsorted); half-created or half-removed ones are skipped."""
        try:
            names = os.listdir(self.root(bucket))
        except FileNotFoundError:
            return
        for name in names:
            # Skipped, with .gone- folders: the reaper (or the start-up sweep) removes those.
            if not _UPLOAD_ID.fullmatch(name):
                continue
            with contextlib.suppress(S3Error):
                yield self.load(bucket, name)

    def sweep_removed(self, bucket: Bucket) -> int:
        """Hand the reaper what removals a previous run did not finish (at start-up);
        the number of such folders."""
        try:
            names = os.listdir(self.root(bucket))
        except FileNotFoundError:
            return 0
        gone = [name for name in names if name.startswith(_GONE_PREFIX)]
        for name in gone:
            self.reaper.remove_tree(self.root(bucket) / name)
        return len(gone)

    def remove(self, bucket: Bucket, upload_id: str) -> None:
        """Forget the upload and its parts: gone at once (a rename), files removed after,
        by the reaper's thread."""
        folder = self.folder(bucket, upload_id)
        gone = folder.with_name(f"{_GONE_PREFIX}{secrets.token_hex(8)}")
        try:
            os.rename(folder, gone)
        except FileNotFoundError:
            raise _no_such_upload(upload_id) from None
        self.reaper.remove_tree(gone)

    def sync_removal(self, bucket: Bucket) -> None:
        """Make a :meth:`remove` durable (callers do so when fsync is on): a completed
        or aborted upload must not be listed again after a power cut.  Blocking: run
        it through :func:`plantcdn.writer.durably`."""
        fsync_dir(self.root(bucket))

    # -- parts -------------------------------------------------------------------

    def part(self, bucket: Bucket, upload_id: str, number: int) -> PartRecord | None:
        """The current record of part *number*, or None when it was never uploaded."""
        path = self.folder(bucket, upload_id) / f"part-{number:05d}.json"
        try:
            return PartRecord.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError):
            return None

    def parts(self, bucket: Bucket, upload_id: str) -> list[PartRecord]:
        """Every uploaded part, by ascending part number."""
        folder = self.folder(bucket, upload_id)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            raise _no_such_upload(upload_id) from None
        numbers = sorted(int(m[1]) for n in names if (m := _PART_RECORD.fullmatch(n)))
        records = [self.part(bucket, upload_id, n) for n in numbers]
        return [r for r in records if r is not None]

    def part_path(self, bucket: Bucket, upload_id: str, record: PartRecord) -> Path:
        if "/" in record.data or record.data.startswith("."):
            raise S3Error("InternalError")
        return self.folder(bucket, upload_id) / record.data

    def store_part(self, bucket: Bucket, upload_id: str, temp: Path, record: PartRecord) -> None:
        """Publish a finished part: move its bytes in, then atomically replace its record.

        The last call to replace the record wins; the bytes it displaced are removed.
        If the upload was aborted or completed meanwhile, *temp* is removed and
        ``NoSuchUpload`` raised.
        """
        folder = self.folder(bucket, upload_id)
        data_name = f"part-{record.number:05d}.{secrets.token_hex(8)}.bin"
        record = evolve(record, data=data_name)
        try:
            os.rename(temp, folder / data_name)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise _no_such_upload(upload_id) from None
        previous = self.part(bucket, upload_id, record.number)
        try:
            self._write_atomic(folder / f"part-{record.number:05d}.json", record.to_json())
        except FileNotFoundError:
            raise _no_such_upload(upload_id) from None
        if self.fsync:
            fsync_dir(folder)
        if previous is not None and previous.data != data_name:
            with contextlib.suppress(OSError, S3Error):
                self.reaper.remove(self.part_path(bucket, upload_id, previous), previous.size)

    # -- helpers --------------------------------------------------------------------

    def _write_atomic(self, path: Path, data: bytes) -> None:
        write_atomically(path, data, fsync=self.fsync)
