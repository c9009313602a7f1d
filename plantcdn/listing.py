"""List pagination as S3 does it: pure logic, plus a sorted walk of a bucket folder.

S3 lists keys in UTF-8 binary order (ListObjectsV2, "Amazon S3 lists objects
in alphabetical order", i.e. by UTF-8 bytes; for valid Unicode that is Python's
code-point order of ``str``).  A page holds at most ``max-keys`` entries,
counting both keys and common prefixes; with a delimiter, the keys that share
a common prefix collapse into one ``CommonPrefixes`` entry.

:func:`walk_keys` produces a bucket's keys already in that order, one folder
at a time, pruning folders outside the prefix or before the marker, so a
listing never holds more than one folder's names in memory and never sorts
the whole bucket.  :func:`paginate` turns any sorted key stream into one page.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from attrs import define, frozen

from plantcdn.errors import S3Error
from plantcdn.keys import INTERNAL_PREFIX

__all__ = [
    "MAX_KEYS",
    "Entry",
    "KeyWalker",
    "Page",
    "decode_token",
    "encode_token",
    "paginate",
    "parse_max_keys",
    "walk_keys",
]

#: "Returns some or all (up to 1,000) of the objects in a bucket" (ListObjectsV2).
MAX_KEYS = 1000

_TOKEN_PREFIX = b"plantcdn-v1:"


@frozen
class Entry:
    """One page entry: an object key, or a common prefix (``is_prefix``)."""

    name: str
    is_prefix: bool = False


@frozen
class Page:
    """One page of a listing; ``last`` is where the next page starts after."""

    entries: tuple[Entry, ...]
    is_truncated: bool

    @property
    def keys(self) -> list[str]:
        return [e.name for e in self.entries if not e.is_prefix]

    @property
    def common_prefixes(self) -> list[str]:
        return [e.name for e in self.entries if e.is_prefix]

    @property
    def last(self) -> str | None:
        return self.entries[-1].name if self.entries else None


def parse_max_keys(value: str | None) -> int:
    """``max-keys``: default and cap 1000; not a non-negative integer -> InvalidArgument."""
    if value is None:
        return MAX_KEYS
    text = value.strip()
    if not (text.isascii() and text.isdigit()):  # "¹".isdigit(), but int("¹") raises
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": "max-keys", "ArgumentValue": value},
        )
    return min(int(text), MAX_KEYS)


def encode_token(last: str) -> str:
    """An opaque continuation token naming the last entry of a page."""
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + last.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    """The entry a continuation token names; anything else is S3's InvalidArgument."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if raw.startswith(_TOKEN_PREFIX):
            return raw[len(_TOKEN_PREFIX) :].decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        pass
    raise S3Error(
        "InvalidArgument",
        "The continuation token provided is incorrect",
        extra={"ArgumentName": "continuation-token"},
    )


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix *key* rolls up into, or None when it is listed itself."""
    if not delimiter:
        return None
    index = key.find(delimiter, len(prefix))
    if index < 0:
        return None
    return key[: index + len(delimiter)]


class KeyWalker:
    """Anything :func:`paginate` can ask to skip the rest of a rolled-up prefix."""

    def skip_prefix(self, prefix: str) -> None:
        """Keys starting with *prefix* are no longer wanted (a hint, may be ignored)."""


def paginate(
    keys: Iterable[str],
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str | None = None,
    max_keys: int = MAX_KEYS,
    walker: KeyWalker | None = None,
) -> Page:
    """One page from *keys* (sorted, UTF-8 binary order).

    *after* is the exclusive start (``marker``, ``start-after`` or the entry a
    continuation token names).  When *after* is itself a common prefix, the
    keys below it were already returned as that prefix and are skipped, so a
    page never repeats the previous page's last entry.  The page is truncated
    only when a further entry exists, so ``IsTruncated`` is never a false promise.
    """
    if max_keys <= 0:
        return Page((), False)
    if (
        walker is not None
        and after is not None
        and common_prefix(after, prefix, delimiter) == after
    ):
        walker.skip_prefix(after)  # resuming after a common prefix: nothing below it is due
    entries: list[Entry] = []
    last_prefix: str | None = None
    for key in keys:
        if not key.startswith(prefix) or (after is not None and key <= after):
            continue
        rolled = common_prefix(key, prefix, delimiter)
        if rolled is not None and rolled in (last_prefix, after):
            continue
        if len(entries) >= max_keys:
            return Page(tuple(entries), True)
        if rolled is None:
            entries.append(Entry(key))
        else:
            entries.append(Entry(rolled, is_prefix=True))
            last_prefix = rolled
            if walker is not None:
                walker.skip_prefix(rolled)
    return Page(tuple(entries), False)


def _sort_name(entry: os.DirEntry[str], is_dir: bool) -> bytes:
    """A folder sorts as ``name/``: its keys all start so (see :func:`walk_keys`)."""
    return (entry.name + ("/" if is_dir else "")).encode("utf-8")


@define
class _Walk(KeyWalker):
    """State of one sorted walk: the folder root and the prefix to skip, if any."""

    root: Path
    prefix: str
    after: str | None
    skipping: str | None = None

    def skip_prefix(self, prefix: str) -> None:
        self.skipping = prefix

    def _skipped(self, name: str) -> bool:
        return self.skipping is not None and name.startswith(self.skipping)

    def _wanted_folder(self, base: str) -> bool:
        """Whether the folder whose keys all start with *base* may hold a wanted key."""
        if not (base.startswith(self.prefix) or self.prefix.startswith(base)):
            return False
        if self.after is not None and base <= self.after and not self.after.startswith(base):
            return False  # every key in it sorts before the marker
        return not self._skipped(base)

    def _wanted_key(self, key: str) -> bool:
        if not key.startswith(self.prefix) or self._skipped(key):
            return False
        return self.after is None or key > self.after

    def keys(self, folder: Path, base: str) -> Iterator[str]:
        try:
            with os.scandir(folder) as scan:
                listed = []
                for entry in scan:
                    if base == "" and entry.name.startswith(INTERNAL_PREFIX):
                        continue
                    try:
                        entry.name.encode("utf-8")
                    except UnicodeEncodeError:
                        continue  # a name no key can have (not UTF-8)
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                        is_file = is_dir is False and (
                            entry.is_file(follow_symlinks=False) or entry.is_symlink()
                        )
                    except OSError:
                        continue
                    if is_dir or is_file:
                        listed.append((_sort_name(entry, is_dir), entry.name, is_dir))
        except OSError:
            return
        listed.sort()
        for _, name, is_dir in listed:
            key = base + name
            if is_dir:
                if self._wanted_folder(key + "/"):
                    yield from self.keys(folder / name, key + "/")
            elif self._wanted_key(key):
                yield key


def walk_keys(
    root: Path, prefix: str = "", after: str | None = None
) -> tuple[Iterator[str], KeyWalker]:
    """The keys below *root* in UTF-8 binary order, with the walker to prune it.

    Why sorting one folder at a time gives the global order: inside a folder
    each entry's keys share the entry's name as their first segment, and a
    folder ``d`` holds only keys starting ``d/``.  Ordering entries by
    ``name`` for files and ``name + "/"`` for folders therefore orders every
    key of one entry against every key of another.  Plantcdn's own
    ``.plantcdn`` folder and names that are not UTF-8 are never listed;
    symlinked folders are not followed.
    """
    walk = _Walk(root, prefix, after)
    return walk.keys(root, ""), walk
