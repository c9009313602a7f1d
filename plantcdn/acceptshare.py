"""Share the connections of one listening socket fairly among ``--workers`` processes.

All processes wait on the same socket; Linux wakes every one of them when
a connection arrives, and Twisted's ``Port.doRead`` then accepts as many as
it can (``numberAccepts``, 100 and growing).  The process that wakes first
-- usually the busiest, as it is already running -- took a whole burst of
connects (a load balancer's pool, a browser's six, a benchmark's 64) and
kept them for their keep-alive lifetime while the others idled.

Here each process publishes how many connections it holds on a small
shared board (a file mapped by all of them, handed to workers as a file
descriptor) and, when woken, accepts a single connection -- unless it holds
more than the least busy process, in which case it leaves the socket to
the others for a moment (``YIELD_SECONDS``).  It never yields more than
``MAX_YIELDS`` times in a row, so a stuck or dead process (whose count
stays low) cannot keep a connection from being accepted.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
from typing import Any

__all__ = ["AcceptBoard", "share_accepts"]

_SLOT = struct.Struct("=q")

#: How long a busier process leaves a waiting connection to the others.
YIELD_SECONDS = 0.001
MAX_YIELDS = 3


class AcceptBoard:
    """How many connections each process holds: one 8-byte slot per process."""

    def __init__(self, fd: int, slots: int) -> None:
        self.fd = fd
        self.slots = slots
        self._map = mmap.mmap(fd, _SLOT.size * slots)

    @classmethod
    def create(cls, slots: int) -> AcceptBoard:
        """A new, zeroed board in an unlinked temporary file (nothing to clean up)."""
        fd, path = tempfile.mkstemp(prefix="plantcdn-accepts-")
        os.unlink(path)
        os.ftruncate(fd, _SLOT.size * slots)
        return cls(fd, slots)

    def publish(self, index: int, held: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, held)

    def fewest_elsewhere(self, index: int) -> int:
        counts = [
            _SLOT.unpack_from(self._map, i * _SLOT.size)[0]
            for i in range(self.slots)
            if i != index
        ]
        return min(counts) if counts else 0


def share_accepts(port: Any, reactor: Any, board: AcceptBoard, index: int) -> None:
    """Make *port* (shared with the other processes on *board*) take its fair share."""
    read = port.doRead
    ops: Any = getattr(port.factory, "ops", None)
    yields = 0

    def held() -> int:
        return len(ops.channels) if ops is not None else 0

    def resume() -> None:
        if port.connected and not port.disconnecting:
            port.startReading()

    def do_read() -> Any:
        nonlocal yields
        mine = held()
        board.publish(index, mine)
        if mine > board.fewest_elsewhere(index) and yields < MAX_YIELDS:
            yields += 1
            port.stopReading()
            reactor.callLater(YIELD_SECONDS, resume)
            return None
        yields = 0
        port.numberAccepts = 1
        result = read()
        board.publish(index, held())
        return result

    port.doRead = do_read
