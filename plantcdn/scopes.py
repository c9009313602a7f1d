"""Scoped credentials: extra key pairs limited to key prefixes and operations.

AWS itself would express this with an IAM policy on each user (``s3:GetObject``
on ``arn:aws:s3:::bucket/company_7/*``, ``s3:ListBucket`` with an
``s3:prefix`` condition, ...).  plantcdn has no IAM, so the same intent is a
small JSON file (``PLANTCDN_CREDENTIALS_FILE``)::

    [{"access_key_id": "PLANT7UPLOADER",
      "secret_access_key": "...",
      "prefixes": ["company_7/plant_3/"],
      "operations": ["read", "write"]}]

The main key pair keeps full access; a scoped key may only touch keys that
start with one of its prefixes, and only with the operation categories it
lists.  Everything it may not do answers S3's 403 ``AccessDenied`` (what IAM
answers), without saying why -- a refusal must not describe the policy.

The policy half (:class:`Scope`, :func:`load_scoped_credentials`,
:func:`authorize`, :data:`OPERATION_CATEGORIES`) is pure.  The reloading half
(:class:`CredentialStore`, :func:`reload_on_sighup`) touches the file system
and signals only at the edges, with the clock and the reactor injected.
Secrets live only in :class:`~plantcdn.credentials.Credential`, whose repr hides
them; no error or log line here ever quotes one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen
from twisted.logger import Logger

from plantcdn.credentials import DEV_ACCESS_KEY_ID, Credential
from plantcdn.errors import S3Error

__all__ = [
    "CATEGORIES",
    "OPERATION_CATEGORIES",
    "CredentialStore",
    "Scope",
    "ScopedCredential",
    "ScopesError",
    "authorize",
    "category_for",
    "load_scoped_credentials",
    "read_scoped_credentials",
    "reload_on_sighup",
    "request_subject",
]

log = Logger()

#: The operation categories a scoped key may be granted.
CATEGORIES = frozenset({"read", "write", "delete", "list"})

#: Allowed to any authenticated key, whatever its scope: they reveal only that
#: the configured buckets exist (IAM: ``s3:ListAllMyBuckets``, ``s3:ListBucket``
#: for HeadBucket, ``s3:GetBucketLocation``), never a key.
ANY = "any"
#: Bucket configuration: only the main key pair (a scoped key is a tenant's key).
ADMIN = "admin"

#: S3 operation (as :func:`plantcdn.routing.operation_for` names it) -> category.
#: An operation missing here is refused to every scoped key (fail closed).
OPERATION_CATEGORIES: Mapping[str, str] = {
    # read: the object's bytes or its description
    "GetObject": "read",
    "HeadObject": "read",
    "GetObjectAttributes": "read",
    "GetObjectTagging": "read",
    "GetObjectAcl": "read",
    "CopySource": "read",  # the source of CopyObject / UploadPartCopy
    # write: anything that creates or changes an object
    "PutObject": "write",
    "PostObject": "write",
    "CopyObject": "write",  # the destination; the source needs "read" too
    "PutObjectTagging": "write",
    "DeleteObjectTagging": "write",
    "PutObjectAcl": "write",
    "CreateMultipartUpload": "write",
    "UploadPart": "write",
    "UploadPartCopy": "write",
    "CompleteMultipartUpload": "write",
    "AbortMultipartUpload": "write",
    # delete
    "DeleteObject": "delete",
    "DeleteObjects": "delete",  # each key of the body is checked by plantcdn.deletes
    # list
    "ListObjects": "list",
    "ListObjectsV2": "list",
    "ListMultipartUploads": "list",
    "ListParts": "list",
    # any authenticated key
    "ListBuckets": ANY,
    "HeadBucket": ANY,
    "GetBucketLocation": ANY,
    "GetBucketVersioning": ANY,
    # the main key pair only
    "GetBucketCors": ADMIN,
    "PutBucketCors": ADMIN,
    "DeleteBucketCors": ADMIN,
    "CreateBucket": ADMIN,
    "DeleteBucket": ADMIN,
    "BucketSubresource": ADMIN,
}

#: Operations whose subject is the ``prefix`` query parameter rather than a key.
_PREFIX_OPERATIONS = frozenset({"ListObjects", "ListObjectsV2", "ListMultipartUploads"})

_FIELDS = frozenset({"access_key_id", "secret_access_key", "prefixes", "operations", "buckets"})
_REQUIRED = ("access_key_id", "secret_access_key", "prefixes", "operations")
# ':' separates key and signature in SigV2's "AWS key:sig", '/' the SigV4 scope.
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{2,127}", re.ASCII)
_SECRET = re.compile(r"[\x21-\x7e]{16,256}", re.ASCII)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
#: A credentials file larger than this is a mistake, not a key list.
MAX_FILE_BYTES = 1024 * 1024


class ScopesError(ValueError):
    """A credentials file plantcdn cannot use; the message never holds a secret."""


@frozen
class Scope:
    """What one scoped key may do: key prefixes, categories, optionally buckets."""

    prefixes: tuple[str, ...]
    operations: frozenset[str]
    buckets: frozenset[str] | None = None  # None: every configured bucket


@frozen
class ScopedCredential:
    """A key pair and its scope (the secret is hidden by :class:`Credential`'s repr)."""

    credential: Credential
    scope: Scope

    @property
    def access_key_id(self) -> str:
        return self.credential.access_key_id


# --------------------------------------------------------------------------
# Loading


def load_scoped_credentials(
    text: str | bytes, *, reserved: Iterable[str] = (), source: str = "credentials file"
) -> tuple[ScopedCredential, ...]:
    """Parse and validate a credentials file's JSON, or raise :class:`ScopesError`.

    *reserved* are access key ids already in use (the main key pair): a scoped
    entry may not shadow them, or the main key would silently lose its access.
    Errors name the entry (index and access key id) and the field, never a value
    that might be a secret.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        # JSONDecodeError's text is a position, never content; others are generic.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not valid UTF-8 JSON"
        where = (
            f" (line {exc.lineno} column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ScopesError(f"{source}: not valid JSON: {detail}{where}") from None
    if not isinstance(document, list):
        raise ScopesError(f"{source}: expected a JSON list of key pairs, got {_kind(document)}")
    taken = set(reserved)
    result: list[ScopedCredential] = []
    for index, entry in enumerate(document):
        scoped = _entry(entry, f"{source}: entry {index}")
        key_id = scoped.access_key_id
        if key_id in taken:
            raise ScopesError(
                f"{source}: entry {index}: access_key_id {key_id!r} is already in use "
                "(the main key pair or an earlier entry)"
            )
        taken.add(key_id)
        result.append(scoped)
    return tuple(result)


def read_scoped_credentials(
    path: Path, *, reserved: Iterable[str] = ()
) -> tuple[ScopedCredential, ...]:
    """Read and validate the file at *path* (bounded in size), or raise :class:`ScopesError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScopesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScopesError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return load_scoped_credentials(data, reserved=reserved, source=str(path))


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _entry(entry: object, where: str) -> ScopedCredential:
    if not isinstance(entry, dict):
        raise ScopesError(f"{where}: expected an object, got {_kind(entry)}")
    key_id = entry.get("access_key_id")
    if not isinstance(key_id, str) or not _ACCESS_KEY_ID.fullmatch(key_id):
        raise ScopesError(
            f"{where}: access_key_id must be 3 to 128 letters, digits, '_', '.' or '-'"
        )
    where = f"{where} ({key_id})"
    unknown = sorted(str(name) for name in entry if name not in _FIELDS)
    if unknown:
        raise ScopesError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}"
        )
    missing = [name for name in _REQUIRED if name not in entry]
    if missing:
        raise ScopesError(f"{where}: missing field(s) {', '.join(missing)}")
    if key_id == DEV_ACCESS_KEY_ID:
        raise ScopesError(f"{where}: the public development access key id cannot be scoped")
    secret = entry["secret_access_key"]
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        raise ScopesError(
            f"{where}: secret_access_key must be 16 to 256 printable ASCII characters "
            "without spaces"
        )
    return ScopedCredential(
        Credential(key_id, secret),
        Scope(
            prefixes=_prefixes(entry["prefixes"], where),
            operations=_operations(entry["operations"], where),
            buckets=_buckets(entry.get("buckets"), where),
        ),
    )


def _string_list(value: object, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ScopesError(f"{where}: {name} must be a non-empty list of strings")
    if not all(isinstance(item, str) for item in value):
        raise ScopesError(f"{where}: {name} must hold only strings")
    return list(value)


def _prefixes(value: object, where: str) -> tuple[str, ...]:
    prefixes = _string_list(value, where, "prefixes")
    for prefix in prefixes:
        if not prefix.endswith("/"):
            raise ScopesError(
                f"{where}: prefix {prefix!r} must end with '/' (without it, "
                f"{prefix!r} would also grant {prefix + '0/'!r} and its neighbours)"
            )
        if prefix.startswith("/") or not _plain_path(prefix[:-1]):
            raise ScopesError(
                f"{where}: prefix {prefix!r} must be folder names joined by '/', with no "
                "leading '/', no empty, '.' or '..' folder, no backslash or control character"
            )
        if len(prefix.encode("utf-8")) > 1024:
            raise ScopesError(f"{where}: prefix is longer than a key may be (1024 bytes)")
    return tuple(dict.fromkeys(prefixes))


def _operations(value: object, where: str) -> frozenset[str]:
    operations = _string_list(value, where, "operations")
    unknown = sorted(set(operations) - CATEGORIES)
    if unknown:
        raise ScopesError(
            f"{where}: unknown operation(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(CATEGORIES))}"
        )
    return frozenset(operations)


def _buckets(value: object, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    buckets = _string_list(value, where, "buckets")
    for bucket in buckets:
        if not _BUCKET.fullmatch(bucket):
            raise ScopesError(f"{where}: {bucket!r} is not a valid S3 bucket name")
    return frozenset(buckets)


def _plain_path(text: str) -> bool:
    """Folder names joined by "/": nothing a file system could read as a step elsewhere."""
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in text):
        return False
    return all(segment not in ("", ".", "..") for segment in text.split("/"))


# --------------------------------------------------------------------------
# The policy


def category_for(operation: str) -> str | None:
    """The category of an S3 operation name, or None when scoped keys may never use it."""
    return OPERATION_CATEGORIES.get(operation)


def request_subject(
    operation: str, key: str | None, query: Mapping[str, str]
) -> str | None:
    """What a request's scope check is about: its key, or the listing's ``prefix``.

    None for DeleteObjects, whose keys are in the body and checked one by one
    (:func:`plantcdn.deletes`), and for operations that address no key.
    """
    if operation in _PREFIX_OPERATIONS:
        return query.get("prefix", "")
    if operation == "DeleteObjects":
        return None
    return key


def authorize(
    scope: Scope | None,
    operation_category: str | None,
    bucket: str | None,
    key_or_prefix: str | None,
) -> None:
    """Allow the request, or raise S3's 403 ``AccessDenied``.

    *scope* None is the main key pair: everything.  *key_or_prefix* None means
    the caller checks each key itself (DeleteObjects); any other category
    needs a string, and a listing's prefix must itself lie inside an allowed
    prefix (as an IAM ``s3:prefix`` condition demands), so a listing can never
    show another tenant's keys.  A key or prefix holding a ``.``/``..``
    segment or a backslash is refused outright: the scope is about folders,
    and such a name is the start of an escape, not a tenant's key.
    """
    if scope is None:
        return
    if operation_category == ANY:
        if bucket is not None and scope.buckets is not None and bucket not in scope.buckets:
            raise _denied()
        return
    if operation_category not in scope.operations:
        raise _denied()  # unknown operation, ADMIN, or a category not granted
    if bucket is None or (scope.buckets is not None and bucket not in scope.buckets):
        raise _denied()
    if key_or_prefix is None:
        if operation_category == "delete":
            return  # DeleteObjects: each key is checked by the handler
        raise _denied()
    if not _plain_path(key_or_prefix.rstrip("/") if key_or_prefix else "x"):
        raise _denied()
    if not any(key_or_prefix.startswith(prefix) for prefix in scope.prefixes):
        raise _denied()


def _denied() -> S3Error:
    return S3Error("AccessDenied")


# --------------------------------------------------------------------------
# Reloading


_Signature = tuple[int, int, int]


def _file_signature(path: Path) -> _Signature | None:
    """What changes when the file is edited or replaced (mtime alone has coarse clocks)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CredentialStore:
    """The current credential map: the main pairs plus the scoped ones from a file.

    Reloaded on demand (:meth:`reload`, wired to SIGHUP) and, when
    :meth:`credentials` is read, whenever the file's mtime, size or inode
    changed -- looked at no more than once per *check_interval* seconds, so a
    busy server stats the file about once a second.  A file that fails to load
    leaves the previous credentials in place and is logged once per change.
    """

    def __init__(
        self,
        main: Iterable[Credential],
        path: Path | None,
        *,
        initial: Iterable[ScopedCredential] = (),
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = 1.0,
    ) -> None:
        self._main = tuple(main)
        self.path = path
        self._clock = clock
        self._interval = check_interval
        self._next_check = clock() + check_interval
        self._seen = _file_signature(path) if path is not None else None
        self._install(tuple(initial))

    def _install(self, scoped: tuple[ScopedCredential, ...]) -> None:
        merged = {c.access_key_id: c for c in self._main}
        for item in scoped:
            merged.setdefault(item.access_key_id, item.credential)
        # Replaced whole, never mutated: a reader always sees one consistent map.
        self._credentials: Mapping[str, Credential] = merged
        self._scopes: Mapping[str, Scope] = {s.access_key_id: s.scope for s in scoped}

    @property
    def credentials(self) -> Mapping[str, Credential]:
        """Every key pair that may sign a request (checking the file at most once a second)."""
        if self.path is not None:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self._interval
                signature = _file_signature(self.path)
                if signature != self._seen:
                    self._seen = signature
                    self.reload()
        return self._credentials

    def scope_of(self, access_key_id: str | None) -> Scope | None:
        """The scope of a key; raises ``AccessDenied`` for a key no longer known.

        A request authenticated just before a reload removed its key is refused
        rather than let through with full access.
        """
        if access_key_id is None:
            raise _denied()
        scope = self._scopes.get(access_key_id)
        if scope is None and access_key_id not in {c.access_key_id for c in self._main}:
            raise _denied()
        return scope

    @property
    def scoped_count(self) -> int:
        return len(self._scopes)

    def reload(self) -> bool:
        """Re-read the file; True if the new credentials are in use.

        On any error the previous credentials stay and the error is logged
        (the message names the entry and field, never a secret).
        """
        if self.path is None:
            return False
        self._seen = _file_signature(self.path)
        try:
            scoped = read_scoped_credentials(
                self.path, reserved=[c.access_key_id for c in self._main]
            )
        except ScopesError as exc:
            log.error(
                "scoped credentials not reloaded, keeping the previous {count} key(s): {error}",
                count=self.scoped_count,
                error=str(exc),
            )
            return False
        self._install(scoped)
        log.info(
            "scoped credentials reloaded from {path}: {count} key(s)",
            path=str(self.path),
            count=len(scoped),
        )
        return True


class _ThreadCaller(Protocol):
    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None: ...  # noqa: N802


def reload_on_sighup(reload: Callable[[], object], reactor: _ThreadCaller) -> Callable[[], None]:
    """Reload the credentials on SIGHUP; returns a function that restores the old handler.

    A signal handler runs between two bytecodes of whatever the main thread
    was doing -- possibly inside the reactor -- so it only asks the reactor
    to run the reload on its next turn (``callFromThread`` is the one reactor
    call documented safe from there).  An earlier handler (the worker pool's,
    which passes SIGHUP on) keeps being called.
    """
    if not hasattr(signal, "SIGHUP"):
        return lambda: None
    previous = signal.getsignal(signal.SIGHUP)

    def on_hangup(signum: int, frame: Any) -> None:
        reactor.callFromThread(reload)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGHUP, on_hangup)

    def restore() -> None:
        if signal.getsignal(signal.SIGHUP) is on_hangup:
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)

    return restore
