"""Bounded in-memory caches for ``/cdn``: the edge's hit/miss memory and parsed metadata.

:class:`EdgeCache` only remembers *which*
object versions were served and when, so ``X-Cache`` and ``Age`` behave as a
CloudFront edge's would: the first request after a write is a ``Miss``, later
ones are ``Hit`` with ``Age`` seconds since the edge fetched the object.  An
identity includes the file's inode, and every write renames a new inode into
place, so a write is a miss without any invalidation message.

:class:`MetaCache` keeps parsed :class:`~plantcdn.storage.ObjectMeta` keyed
by ``(bucket, key, inode, size, mtime_ns)``: a write (new inode) or a hand
edit (new size or mtime) changes the key, so a stale entry is never returned,
only evicted by LRU.  Time is injected (``clock()``), so tests never sleep.

:class:`BodyCache` keeps the bytes of small objects, as an edge keeps what
it served, keyed by the same kind of file identity (device, inode, size,
mtime): one ``lstat`` proves a cached body is still the stored one, so a hit
skips opening, reading and closing the file.  It is bounded by total bytes;
each ``--workers`` process has its own, and every write (a new inode) in any
process makes the old entry unreachable.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_TTL", "BodyCache", "EdgeCache", "LRU", "MetaCache", "cache_ttl"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: The ``Managed-CachingOptimized`` cache policy: minimum TTL 1 s, default TTL
#: 86,400 s (one day), maximum TTL 31,536,000 s (one year) (CloudFront Developer
#: Guide, "Use managed cache policies").
MIN_TTL = 1
DEFAULT_TTL = 86_400
MAX_TTL = 31_536_000

_MAX_AGE = re.compile(r"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def cache_ttl(cache_control: str | None) -> int:
    """How long an edge keeps an object, from its ``Cache-Control``.

    Follows "Manage how long content stays in the cache (expiration)": ``s-maxage``
    wins over ``max-age``; without either the default TTL applies; the result
    is clamped to the policy's minimum and maximum TTL (with a minimum TTL above
    zero, even ``no-cache``/``no-store`` objects are kept for that minimum).
    """
    if not cache_control:
        return DEFAULT_TTL
    found = dict((name.lower(), int(value)) for name, value in _MAX_AGE.findall(cache_control))
    seconds = found.get("s-maxage", found.get("max-age"))
    if seconds is None:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered or "private" in lowered:
            return MIN_TTL
        return DEFAULT_TTL
    return max(MIN_TTL, min(MAX_TTL, seconds))


class LRU(Generic[K, V]):
    """A dict with a size bound that forgets the least recently used entry first."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class EdgeCache:
    """Which object versions this "edge" holds, and since when.

    ``status(identity, ttl)`` returns CloudFront's ``X-Cache`` word and the
    ``Age`` to send (``None``: no Age header).  A version seen for longer than
    its TTL is revalidated against the origin, which CloudFront reports as
    ``RefreshHit``; the edge's copy then counts as fresh again.
    """

    def __init__(self, clock: Callable[[], float], max_entries: int = 10_000) -> None:
        self._clock = clock
        self._fetched: LRU[Hashable, float] = LRU(max_entries)

    def status(self, identity: Hashable, ttl: int) -> tuple[str, int | None]:
        now = self._clock()
        fetched = self._fetched.get(identity)
        if fetched is None or now < fetched:
            self._fetched.put(identity, now)
            return "Miss", None
        age = int(now - fetched)
        if age >= ttl:
            self._fetched.put(identity, now)
            return "RefreshHit", None
        return "Hit", age


class MetaCache(LRU[tuple[str, str, int, int, int], V]):
    """Parsed metadata by ``(bucket, key, inode, size, mtime_ns)`` (see the module docstring)."""


class BodyCache:
    """Small object bodies by file identity, bounded by their total size (LRU).

    Bodies over *max_object* bytes are never kept: they stream from disk, and
    one of them would evict many small ones.
    """

    def __init__(self, max_bytes: int, max_object: int) -> None:
        self.max_bytes = max_bytes
        self.max_object = min(max_object, max_bytes)
        self.size = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, identity: Hashable) -> bytes | None:
        data = self._entries.get(identity)
        if data is not None:
            self._entries.move_to_end(identity)
        return data

    def put(self, identity: Hashable, data: bytes) -> None:
        if len(data) > self.max_object or identity in self._entries:
            return
        self._entries[identity] = data
        self.size += len(data)
        while self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted)
