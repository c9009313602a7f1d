"""Removing large files nobody can see any more, off the thread that answers requests.

Freeing the blocks of a large file is slow work for the file system: ext4
took about 0.6 s to unlink a 1 GiB object already written back to disk. An
overwrite or a DeleteObject did that in the reactor thread before it answered,
so the request, and every other connection of the process, waited for it.
Completing or aborting a multipart upload removed its parts (a GiB of them)
the same way. Such files have already left their key or upload (swapped out
to the bucket's ``.plantcdn/tmp``, or renamed there or to a "gone" folder),
so nothing is lost if they are removed a moment later. If the process ends
first, the start-up sweeps remove them (``Storage.prepare`` for
``.plantcdn/tmp``, ``UploadStore.sweep_removed`` for gone folders).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Final

from twisted.logger import Logger

__all__ = ["BACKGROUND_SIZE", "Reaper"]

log = Logger()

#: Files at least this large are removed by the reaper's thread; smaller ones
#: inline, where an unlink costs less than handing it over.
BACKGROUND_SIZE: Final = 8 * 1024 * 1024


class Reaper:
    """A daemon thread (one per process, started on first use) that removes the
    files and folders it is given, in order."""

    def __init__(self, background_size: int = BACKGROUND_SIZE) -> None:
        self.background_size = background_size
        self._queue: queue.SimpleQueue[tuple[Path, bool]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._pending = 0

    def remove(self, path: Path, size: int) -> None:
        """Unlink the file *path* (*size* bytes): now if small, else soon, on the thread."""
        if size < self.background_size:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        self._hand_over(path, tree=False)

    def remove_tree(self, folder: Path) -> None:
        """Remove *folder* and everything in it, on the thread."""
        self._hand_over(folder, tree=True)

    def _hand_over(self, path: Path, *, tree: bool) -> None:
        with self._lock:
            if not self._started:
                threading.Thread(target=self._run, name="plantcdn-reaper", daemon=True).start()
                self._started = True
            self._pending += 1
        self._queue.put((path, tree))

    @property
    def pending(self) -> int:
        """Files handed over and not yet removed."""
        return self._pending

    def _run(self) -> None:
        while True:
            path, tree = self._queue.get()
            try:
                if tree:
                    shutil.rmtree(path, onerror=_unless_missing)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                _warn_on_reactor_thread(path, exc)
            with self._lock:
                self._pending -= 1


def _warn_on_reactor_thread(path: Path, exc: OSError) -> None:
    """Log a failed removal from the reactor's thread: log observers (files, the
    access log's pipe) are not written from two threads at once."""
    from twisted.internet import reactor

    reactor.callFromThread(  # type: ignore[attr-defined]
        log.warn, "could not remove {path}: {error}", path=str(path), error=str(exc)
    )


def _unless_missing(
    function: object, path: str, exc_info: tuple[type, BaseException, object]
) -> None:
    """rmtree's error handler: what is gone already (another remover) is no error."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
