"""``--workers N``: more reactor processes sharing the listening sockets.

One Twisted reactor uses one core.  With ``--workers N`` the twistd process
listens as usual, then starts N-1 worker processes that adopt the same
listening sockets (``IReactorSocket.adoptStreamPort``); connections are
shared fairly among them (:mod:`plantcdn.acceptshare`).  Everything they
share lives on disk and is safe across processes: atomic renames for
objects and metadata, ``If-None-Match: *`` publishes as a hard link (refused
by the kernel over an existing name), multipart state in files, CORS and
scoped credentials re-read when their files change.  ``If-Match`` writes are
atomic within one process only (see README).  Caches (``/cdn`` metadata and
bodies, edge Hit/Miss) and metrics are per process.  SIGTERM and SIGHUP
received by the parent are passed on; the parent waits (bounded) for its
workers to exit before it exits itself.

A worker's log events (access lines included) travel to the parent as JSON
records on the worker's stdout and are published there, so they land in
the one log twistd was told to write (``--logfile``, JSON format or not),
with every field, rather than on whatever terminal started the parent.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, eventFromJSON, globalLogPublisher, jsonFileLogObserver

from plantcdn.acceptshare import AcceptBoard, share_accepts
from plantcdn.accesslog import ClassicTextObserver, JsonLinesObserver, opened_log

__all__ = ["WorkerPool", "parse_workers", "worker_main"]

log = Logger()

#: How long a worker may take to drain after SIGTERM before it is killed.
STOP_GRACE = 30.0


def parse_workers(text: str) -> int:
    """``auto`` (one per core) or a number from 1 to 64."""
    if text.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    count = int(text)
    if not 1 <= count <= 64:
        raise ValueError("--workers must be 'auto' or between 1 and 64")
    return count


#: ``jsonFileLogObserver`` writes RS, one line of JSON, LF (RFC 7464 JSON text sequences).
_RECORD_START = b"\x1e"
#: A worker's half-written record is kept up to this size, then dropped.
_MAX_RECORD = 1024 * 1024


class _WorkerProcess(protocol.ProcessProtocol):
    """A worker seen from the parent: its log lines arrive on its standard output.

    With *copy_to* (plantcdn's own log stream), the worker formats its lines
    exactly as the parent would and they are copied in verbatim, complete
    lines only, many per write; the parent stays the file's one writer, so
    twistd's rotation still holds.  Without it (an operator's observer), each
    record is published as an event in the parent's log.
    """

    def __init__(self, pool: WorkerPool, index: int, copy_to: IO[str] | None = None) -> None:
        self.pool = pool
        self.index = index
        self.copy_to = copy_to
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._pending = b""

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        """Write or publish the worker's complete log records in this (the parent's) log."""
        if self.copy_to is not None:
            complete, newline, self._pending = (self._pending + data).rpartition(b"\n")
            if len(self._pending) > _MAX_RECORD:
                self._pending = b""
            if newline:
                self.copy_to.write(complete.decode("utf-8", "replace") + "\n")
                self.copy_to.flush()
            return
        records = (self._pending + data).split(b"\n")
        self._pending = records.pop()
        if len(self._pending) > _MAX_RECORD:
            self._pending = b""
        for record in records:
            self._publish(record)

    def _publish(self, record: bytes) -> None:
        text = record.strip().lstrip(_RECORD_START)
        if not text:
            return
        try:
            event = eventFromJSON(text.decode("utf-8", "replace"))
        except ValueError:
            event = {"log_format": "{line}", "line": text.decode("utf-8", "replace")}
        event["plantcdn_worker"] = self.index + 1
        globalLogPublisher(event)

    def processEnded(self, reason: Any) -> None:
        if self._pending:
            self.outReceived(b"\n")
        self._pending = b""
        self.ended.callback(None)
        self.pool.worker_ended(self, reason)


class WorkerPool(Service):
    """Starts and stops the extra worker processes once the parent is listening."""

    def __init__(
        self,
        count: int,
        listeners: Sequence[Any],
        environ: Mapping[str, str],
        data_dir: str,
        reactor: Any,
    ) -> None:
        self.count = count
        self.listeners = listeners  # ListeningService instances (their .port is set when ready)
        self.environ = dict(environ)
        self.data_dir = data_dir
        self.reactor = reactor
        self.workers: list[_WorkerProcess] = []
        self.stopping = False

    def startService(self) -> None:
        super().startService()
        self._spawn_when_listening()

    def _spawn_when_listening(self) -> None:
        ports: list[IListeningPort | None] = [getattr(s, "port", None) for s in self.listeners]
        if any(p is None for p in ports):
            self.reactor.callLater(0.05, self._spawn_when_listening)
            return
        self.sockets = [_socket_of(p) for p in ports if p is not None]
        self.board = AcceptBoard.create(self.count)
        for port in ports:
            share_accepts(port, self.reactor, self.board, 0)
        for index in range(1, self.count):
            self._spawn(index)
        if hasattr(signal, "SIGHUP"):
            previous = signal.getsignal(signal.SIGHUP)

            def forward_hup(signum: int, frame: Any) -> None:
                self._signal_all("HUP")
                if callable(previous):
                    previous(signum, frame)

            signal.signal(signal.SIGHUP, forward_hup)

    def _spawn(self, index: int) -> None:
        fds = ",".join(f"{fd}:{family}" for fd, family in self.sockets)
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: 2}
        for fd, _ in self.sockets:
            child_fds[fd] = fd
        child_fds[self.board.fd] = self.board.fd
        opened = opened_log()
        log_args = ["--log-format", opened[0]] if opened is not None else []
        worker = _WorkerProcess(self, index, opened[1] if opened is not None else None)
        env = dict(self.environ)
        env["PLANTCDN_WORKER_INDEX"] = str(index)
        self.reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", "plantcdn.workers", "--fds", fds, "--data-dir", self.data_dir,
             "--accept-board", f"{self.board.fd}:{self.count}", "--index", str(index),
             *log_args],
            env=env,
            childFDs=child_fds,
        )
        self.workers.append(worker)
        log.info("started worker {index} of {count}", index=index + 1, count=self.count)

    def worker_ended(self, worker: _WorkerProcess, reason: Any) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if not self.stopping:
            log.error("worker {index} exited ({reason}); starting a new one",
                      index=worker.index + 1, reason=reason.getErrorMessage())
            self.reactor.callLater(1.0, self._spawn, worker.index)

    def _signal_all(self, name: str) -> None:
        for worker in list(self.workers):
            try:
                worker.transport.signalProcess(name)  # type: ignore[union-attr]
            except Exception:  # noqa: S110 - already gone
                pass

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.stopping = True
        if not self.workers:
            return None
        waiting = [w.ended for w in self.workers]
        self._signal_all("TERM")
        killer = self.reactor.callLater(STOP_GRACE, self._signal_all, "KILL")
        done: defer.Deferred[Any] = defer.gatherResults(waiting)

        def cancel_killer(result: object) -> None:
            if killer.active():
                killer.cancel()

        done.addBoth(cancel_killer)
        return done  # type: ignore[return-value]


def _socket_of(port: IListeningPort) -> tuple[int, str]:
    address: Any = port.getHost()
    family = {"IPv6Address": "inet6", "UNIXAddress": "unix"}.get(type(address).__name__, "inet")
    return port.fileno(), family  # type: ignore[attr-defined]


def _exit_with_parent() -> None:
    """Ask Linux for SIGTERM (a graceful drain) when the parent dies, however it dies.

    Without it a parent killed by SIGKILL left its workers serving the old
    port with nobody to stop them.  Elsewhere (no ``prctl``) nothing changes.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was already gone before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _observer_for_parent(log_format: str | None, number: int, out: IO[str]) -> Any:
    """The worker's log observer: the parent's own format, or Twisted's event JSON for
    the parent to publish (under an operator's ``--logger`` or ``--syslog``)."""
    if log_format == "text":
        return ClassicTextObserver(out)
    if log_format == "json":
        lines = JsonLinesObserver(out)
        return lambda event: lines({**event, "plantcdn_worker": number})
    return jsonFileLogObserver(out)


def worker_main(argv: Sequence[str]) -> None:
    """A worker process: the same app over the parent's listening sockets."""
    import argparse
    from pathlib import Path

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from plantcdn.config import Config
    from plantcdn.ops import Ops
    from plantcdn.service import make_site
    from plantcdn.storage import Storage

    parser = argparse.ArgumentParser(prog="plantcdn.workers")
    parser.add_argument("--fds", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--accept-board", default=None)  # FD:SLOTS (plantcdn.acceptshare)
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--log-format", choices=["text", "json"], default=None)
    args = parser.parse_args(argv)
    _exit_with_parent()
    # Lines for the parent to copy or records to publish (see _WorkerProcess), as they happen.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    globalLogBeginner.beginLoggingTo(
        [_observer_for_parent(args.log_format, args.index + 1, sys.stdout)],
        redirectStandardIO=False,
    )
    config = Config.from_environ(os.environ, data_dir=Path(args.data_dir))
    storage = Storage(config)
    ops = Ops(storage, reactor)  # type: ignore[arg-type]
    site = make_site(config, storage, reactor, ops)  # type: ignore[arg-type]
    board = None
    if args.accept_board:
        board_fd, slots = (int(x) for x in args.accept_board.split(":"))
        board = AcceptBoard(board_fd, slots)
    for item in args.fds.split(","):
        fd_text, family = item.split(":")
        fd = int(fd_text)
        families = {"inet6": socket.AF_INET6, "unix": socket.AF_UNIX}
        port = reactor.adoptStreamPort(  # type: ignore[attr-defined]
            fd, families.get(family, socket.AF_INET), site
        )
        if board is not None:
            share_accepts(port, reactor, board, args.index)
        os.close(fd)  # adoptStreamPort duplicated it
    # The parent passes SIGHUP on: re-read the scoped credentials (plantcdn.scopes).
    from plantcdn.scopes import reload_on_sighup

    reload_on_sighup(site.reload_credentials, reactor)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    worker_main(sys.argv[1:])
