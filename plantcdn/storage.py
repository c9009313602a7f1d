"""Buckets as folders: safe path resolution, object metadata, atomic commits.

Layout of one bucket folder (e.g. ``s3_inbox/``)::

    company_1/plant_2/photo.jpg        the object, a plain file
    .plantcdn/tmp/<random>.part        uploads in progress (same filesystem: rename is atomic)
    .plantcdn/meta/ab/<sha256(key)>.<inode>.json   the object's metadata

Metadata is named after the inode of the file it describes and is written
*before* that file is renamed into place, so a reader who stats the object
and then opens the metadata of that inode always sees the pair that belongs
together: metadata becomes visible atomically with the object.  Nothing
below ``.plantcdn`` can be reached as a key (keys must start with
``company_``), so neither ``/cdn`` nor GetObject can serve it.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from attrs import asdict, evolve, field, frozen

from plantcdn.config import Config
from plantcdn.errors import S3Error
from plantcdn.keys import INTERNAL_PREFIX, check_key_syntax
from plantcdn.reaper import Reaper

__all__ = ["Bucket", "ObjectMeta", "StoredObject", "Storage"]

TEMP_SUFFIX = ".part"
_R = TypeVar("_R")

#: Where an object's metadata lives when the filesystem supports user xattrs.
META_XATTR = "user.plantcdn.meta"
_XATTRS = hasattr(os, "setxattr")


@frozen
class ObjectMeta:
    """What S3 returns about an object besides its bytes."""

    etag: str  # quoted, as S3 sends it
    size: int
    last_modified: float
    content_type: str = "binary/octet-stream"
    content_encoding: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    cache_control: str | None = None
    expires: str | None = None
    user_metadata: Mapping[str, str] = field(factory=dict)
    checksums: Mapping[str, str] = field(factory=dict)  # "CRC32" -> base64
    checksum_type: str | None = None
    acl: str | None = None
    tagging: str | None = None
    storage_class: str | None = None
    website_redirect_location: str | None = None
    parts_count: int | None = None
    part_runs: Sequence[Sequence[int]] | None = None  # [[size, count], ...], see partnumber

    def to_json(self) -> bytes:
        return record_to_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> ObjectMeta:
        return record_from_json(cls, data)

    @property
    def http_last_modified(self) -> str:
        return email.utils.formatdate(self.last_modified, usegmt=True)


def record_to_json(record: Any) -> bytes:
    """An attrs record as the small JSON document plantcdn keeps on disk."""
    return json.dumps(asdict(record), sort_keys=True).encode("utf-8")


def record_from_json(cls: type[_R], data: bytes) -> _R:
    """The record *data* holds; fields written by a newer plantcdn are ignored."""
    raw: dict[str, Any] = json.loads(data)
    names = {f.name for f in cls.__attrs_attrs__}  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in raw.items() if k in names})


@frozen
class StoredObject:
    """An object found on disk: where it is and what is known of it."""

    path: Path
    meta: ObjectMeta
    inode: int


@frozen
class Bucket:
    name: str
    root: Path  # resolved absolute folder

    @property
    def internal(self) -> Path:
        return self.root / INTERNAL_PREFIX

    @property
    def tmp_dir(self) -> Path:
        return self.internal / "tmp"

    @property
    def meta_dir(self) -> Path:
        return self.internal / "meta"


class Storage:
    """The buckets on disk.  All path handling for objects goes through here."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.fsync = config.fsync
        self._verified_parents: dict[Path, int] = {}
        self.reaper = Reaper()
        self.buckets: dict[str, Bucket] = {
            b.name: Bucket(b.name, (config.data_dir / b.folder).resolve()) for b in config.buckets
        }

    # -- setup --------------------------------------------------------------

    def prepare(self) -> list[Path]:
        """Create the folders and remove uploads a previous run left unfinished."""
        removed: list[Path] = []
        for bucket in self.buckets.values():
            for folder in (bucket.root, bucket.tmp_dir, bucket.meta_dir):
                folder.mkdir(parents=True, exist_ok=True)
            for leftover in bucket.tmp_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if leftover.is_file() or leftover.is_symlink():
                        leftover.unlink()
                        removed.append(leftover)
        return removed

    # -- lookup -------------------------------------------------------------

    def bucket(self, name: str) -> Bucket:
        try:
            return self.buckets[name]
        except KeyError:
            raise S3Error("NoSuchBucket", extra={"BucketName": name}) from None

    def object_path(self, bucket: Bucket, key: str) -> Path:
        """The file that holds *key*, refusing anything that could escape the bucket."""
        check_key_syntax(key)
        if key.split("/", 1)[0].startswith(INTERNAL_PREFIX):
            raise S3Error("InvalidArgument", "Object key uses a reserved prefix")
        return bucket.root.joinpath(*key.split("/"))

    def find(self, bucket: Bucket, key: str) -> StoredObject | None:
        """The object stored at *key*, or None (also for anything that is not a plain file
        inside the bucket, such as a directory or a symlink leading elsewhere)."""
        try:
            path = self.object_path(bucket, key)
        except S3Error:
            return None
        try:
            st = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return None
        if stat.S_ISLNK(st.st_mode):
            # A person may link files in by hand; follow only links that stay inside.
            try:
                real = path.resolve(strict=True)
            except OSError:
                return None
            if (
                not real.is_relative_to(bucket.root)
                or INTERNAL_PREFIX in real.relative_to(bucket.root).parts[:1]
            ):
                return None
            st = os.stat(real)
        elif not self._parents_inside(bucket, path):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        meta = self._read_meta(bucket, key, st, path)
        return StoredObject(path=path, meta=meta, inode=st.st_ino)

    def open(self, bucket: Bucket, key: str) -> tuple[IO[bytes], StoredObject] | None:
        """Open *key* for reading and describe the very file that was opened.

        The metadata is looked up by the open file's inode, so a concurrent
        overwrite (an atomic rename) can never pair old bytes with new metadata.
        """
        found = self.find(bucket, key)
        if found is None:
            return None
        try:
            file = open(found.path, "rb")  # noqa: SIM115 - handed to a producer that closes it
        except OSError:
            return None
        try:
            st = os.fstat(file.fileno())
            if not stat.S_ISREG(st.st_mode):
                file.close()
                return None
            if st.st_ino != found.inode:
                meta = self._read_meta(bucket, key, st, file.fileno())
                found = StoredObject(found.path, meta, st.st_ino)
        except BaseException:
            file.close()
            raise
        return file, found

    def _parents_inside(self, bucket: Bucket, path: Path) -> bool:
        """True when no directory between the bucket and *path* is a symlink leading out."""
        parent = path.parent
        if parent == bucket.root:
            return True
        try:
            real_parent = parent.resolve(strict=True)
        except OSError:
            return False
        return real_parent.is_relative_to(bucket.root)

    # -- metadata -------------------------------------------------------------

    def _meta_path(self, bucket: Bucket, key: str, inode: int) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return bucket.meta_dir / digest[:2] / f"{digest}.{inode}.json"

    def read_meta(
        self, bucket: Bucket, key: str, st: os.stat_result, source: int | Path | None = None
    ) -> ObjectMeta:
        """The metadata of the file *st* describes (*source*: its open fd or path)."""
        return self._read_meta(bucket, key, st, source)

    def _read_meta(
        self, bucket: Bucket, key: str, st: os.stat_result, source: int | Path | None = None
    ) -> ObjectMeta:
        raw: bytes | None = None
        if source is not None and _XATTRS:
            try:
                raw = os.getxattr(source, META_XATTR)
            except OSError:
                raw = None
        try:
            if raw is None:
                raw = self._meta_path(bucket, key, st.st_ino).read_bytes()
            meta = ObjectMeta.from_json(raw)
            if meta.size == st.st_size:
                return meta
        except (OSError, ValueError, TypeError):
            pass
        # A file placed by hand: describe it from the filesystem.
        return ObjectMeta(
            etag=f'"{st.st_ino:x}{st.st_size:x}{int(st.st_mtime_ns):x}"',
            size=st.st_size,
            last_modified=float(int(st.st_mtime)),
        )

    def _set_xattr_meta(self, path: Path, meta: ObjectMeta) -> bool:
        """Store *meta* in an extended attribute of the file itself, so it moves with
        the rename and becomes visible atomically with the bytes.  False where the
        filesystem has no user xattrs or the value is too large (sidecar file then)."""
        if not _XATTRS:
            return False
        try:
            os.setxattr(path, META_XATTR, meta.to_json(), follow_symlinks=False)
        except OSError:
            return False
        return True

    def _has_xattr_meta(self, path: Path) -> bool:
        if not _XATTRS:
            return False
        try:
            os.getxattr(path, META_XATTR, follow_symlinks=False)
        except OSError:
            return False
        return True

    # -- writing ------------------------------------------------------------

    def new_temp(self, bucket: Bucket) -> tuple[int, Path]:
        """A fresh temporary file inside the bucket's own ``.plantcdn/tmp``.

        The folder is made only when the create finds it missing: a
        ``mkdir(exist_ok=True)`` on every upload cost more than the create.
        """
        path = _temp_name(bucket)
        try:
            fd = os.open(path, _TEMP_FLAGS, 0o644)
        except FileNotFoundError:
            bucket.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _TEMP_FLAGS, 0o644)
        return fd, path

    def commit(
        self, bucket: Bucket, key: str, temp: Path, meta: ObjectMeta, *, exclusive: bool = False
    ) -> ObjectMeta:
        """Publish *temp* as *key* with *meta*: metadata first, then an atomic rename.

        *exclusive* (``If-None-Match: *``): only if no object holds the key at that
        very moment, checked by the kernel (a hard link fails on an existing
        name), so two processes of ``--workers`` cannot both win; else 412.
        """
        target = self.object_path(bucket, key)
        self._make_parents(bucket, target)
        old_inode = None
        with contextlib.suppress(OSError):
            existing = os.lstat(target)
            if stat.S_ISDIR(existing.st_mode):
                raise S3Error(
                    "InvalidArgument",
                    "Object key names a prefix that already holds other objects",
                    extra={"ArgumentName": "key", "ArgumentValue": key},
                )
            old_inode = existing.st_ino
        st = os.stat(temp)
        meta = evolve(meta, size=st.st_size)
        if not self._set_xattr_meta(temp, meta):
            meta_path = self._meta_path(bucket, key, st.st_ino)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomic(meta_path, meta.to_json())
        elif self.fsync:
            _fsync_file(temp)  # the xattr is inode metadata: durable before it is published
        if exclusive:
            try:
                os.link(temp, target)
            except FileExistsError:
                raise S3Error("PreconditionFailed", extra={"Condition": "If-None-Match"}) from None
            with contextlib.suppress(OSError):
                os.unlink(temp)
            replaced = None
        else:
            replaced = _publish(temp, target, exchange=old_inode is not None)
        if replaced is not None:  # the old object, swapped out to the temporary name
            self.reaper.remove(temp, replaced.st_size)
        if self.fsync:
            fsync_dir(target.parent)
        if old_inode is not None and old_inode != st.st_ino:
            with contextlib.suppress(OSError):
                self._meta_path(bucket, key, old_inode).unlink()
        return meta

    def update_meta(self, bucket: Bucket, found: StoredObject, key: str, meta: ObjectMeta) -> bool:
        """Rewrite the metadata of the very file *found* describes (tagging, ACL).

        Written atomically for the same inode; False (and nothing kept) when the
        object was replaced or removed meanwhile, so the caller can answer as S3
        does for a key that is gone.
        """
        in_xattr = self._has_xattr_meta(found.path)
        if in_xattr and self._set_xattr_meta(found.path, meta):
            try:
                return os.stat(found.path).st_ino == found.inode
            except OSError:
                return False
        path = self._meta_path(bucket, key, found.inode)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(path, meta.to_json())
        try:
            current = os.stat(found.path).st_ino
        except OSError:
            current = None
        if current != found.inode:
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        if in_xattr:
            # Grown too large for the xattr: the sidecar now holds it, and the stale
            # xattr (read first) must go, from the very inode the sidecar describes.
            return self._drop_xattr_meta(found)
        return True

    def _drop_xattr_meta(self, found: StoredObject) -> bool:
        try:
            fd = os.open(found.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            if os.fstat(fd).st_ino != found.inode:
                return False
            os.removexattr(fd, META_XATTR)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def delete(self, bucket: Bucket, key: str) -> bool:
        """Remove *key* (and its metadata and now-empty parent folders)."""
        found = self.find(bucket, key)
        if found is None:
            return False
        path = self.object_path(bucket, key)
        self._remove_object(bucket, path, found.meta.size)
        with contextlib.suppress(OSError):
            self._meta_path(bucket, key, found.inode).unlink()
        self._prune_empty(bucket, path.parent)
        return True

    def sync_removals(self, bucket: Bucket, keys: Iterable[str]) -> None:
        """Make the deletes of *keys* durable (callers do so when fsync is on): an
        acknowledged delete must not come back after a power cut.  Each folder is
        synced once (a DeleteObjects of a thousand keys in one folder is one fsync);
        a folder the delete pruned is stood in for by its nearest remaining parent,
        whose sync carries the removal.  Blocking: callers run it through
        :func:`plantcdn.writer.durably`."""
        folders = set()
        for key in keys:
            with contextlib.suppress(S3Error):  # a key no file can have: nothing was removed
                folders.add(self.object_path(bucket, key).parent)
        synced: set[Path] = set()
        for folder in folders:
            while folder != bucket.root and not folder.is_dir():
                folder = folder.parent
            if folder not in synced and folder.is_relative_to(bucket.root):
                fsync_dir(folder)
                synced.add(folder)

    def _remove_object(self, bucket: Bucket, path: Path, size: int) -> None:
        """Take *path* off its key now; a large file leaves through ``.plantcdn/tmp``
        and the reaper, so freeing its blocks does not hold up the answer."""
        if size >= self.reaper.background_size:
            parked = _temp_name(bucket)
            try:
                os.rename(path, parked)
            except OSError:
                pass  # gone already, or no tmp folder to park it in: unlink it here
            else:
                self.reaper.remove(parked, size)
                return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _prune_empty(self, bucket: Bucket, folder: Path) -> None:
        while folder != bucket.root and folder.is_relative_to(bucket.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _make_parents(self, bucket: Bucket, target: Path) -> None:
        """Create the key's folders, refusing any that resolve outside the bucket.

        A folder already verified is only checked again for being a real
        directory (one lstat) instead of resolving the whole path each time.
        """
        parent = target.parent
        known = self._verified_parents.get(parent)
        if known is not None:
            try:
                st = os.lstat(parent)
            except OSError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode) and st.st_ino == known:
                return
            self._verified_parents.pop(parent, None)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise S3Error(
                "InvalidArgument",
                "Object key lies below a key that already holds an object",
                extra={"ArgumentName": "key"},
            ) from None
        if not parent.resolve().is_relative_to(bucket.root):
            raise S3Error("AccessDenied", "Object key resolves outside the bucket")
        if self.fsync and parent != bucket.root:
            # Folders mkdir may just have made exist durably only once each one's
            # own parent is synced; the object's folder itself is synced after the rename.
            for folder in parent.parents:
                fsync_dir(folder)
                if folder == bucket.root:
                    break
        if len(self._verified_parents) >= 4096:
            self._verified_parents.clear()
        self._verified_parents[parent] = os.lstat(parent).st_ino

    def _write_atomic(self, path: Path, data: bytes) -> None:
        write_atomically(path, data, fsync=self.fsync)
        if self.fsync:
            # The new name must be durable before anything that relies on it (the
            # object's rename, in commit) is: sync the folder, and its parent in
            # case mkdir just made the folder.
            fsync_dir(path.parent)
            fsync_dir(path.parent.parent)

    # -- listing --------------------------------------------------------------

    def iter_keys(self, bucket: Bucket, prefix: str = "") -> Iterator[str]:
        """Every key in *bucket* (unsorted), skipping plantcdn's own files."""
        for dirpath, dirnames, filenames in os.walk(bucket.root):
            here = Path(dirpath)
            if here == bucket.root:
                dirnames[:] = [d for d in dirnames if not d.startswith(INTERNAL_PREFIX)]
                filenames = [f for f in filenames if not f.startswith(".")]
            rel = here.relative_to(bucket.root).as_posix()
            base = "" if rel == "." else rel + "/"
            if prefix and not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames[:] = []
                continue
            for name in filenames:
                key = base + name
                if key.startswith(prefix):
                    yield key


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _renameat2() -> Any:
    """libc's ``renameat2`` (Linux, glibc 2.28+), or None where it is not available."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _temp_name(bucket: Bucket) -> Path:
    """A fresh name in the bucket's ``.plantcdn/tmp``, which the start-up sweep empties."""
    return bucket.tmp_dir / f"{os.urandom(16).hex()}{TEMP_SUFFIX}"


def _publish(temp: Path, target: Path, *, exchange: bool = True) -> os.stat_result | None:
    """Put *temp* at *target* atomically: readers see the old object or the new one.

    Over an existing object the two are swapped (``RENAME_EXCHANGE``) and the
    old one, now at the temporary name, is left for the caller to remove (its
    ``lstat`` is returned): ext4 treats a plain rename over an existing file
    as "replace via rename" and forces the new file's blocks to be allocated
    first, which made overwrites about ten times slower than the swap.  Where
    the target does not exist yet or the system has no exchange, a plain
    ``os.replace`` (None).
    """
    if _RENAMEAT2 is not None:
        done = _RENAMEAT2(
            _AT_FDCWD, os.fsencode(temp), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
        )
        if done == 0:
            swapped = os.lstat(temp)
            if stat.S_ISDIR(swapped.st_mode):
                # A folder appeared at the key meanwhile: put it back and refuse.
                _RENAMEAT2(
                    _AT_FDCWD, os.fsencode(temp), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
                )
                raise S3Error(
                    "InvalidArgument",
                    "Object key names a prefix that already holds other objects",
                )
            return swapped
    os.replace(temp, target)
    return None


def write_atomically(path: Path, data: bytes, *, fsync: bool) -> None:
    """Replace the small file *path* with *data* in one step: readers see the old
    document or the new one, never a part (a temporary beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fsync_dir(folder: Path) -> None:
    """Make the names in *folder* (a rename, a new entry) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
