"""Client faults: clients that vanish, fall short or stall mid-body; slow-loris heads.

Every case runs against the real daemon on loopback with short deadlines
(``PLANTCDN_HEADER_TIMEOUT=2``, ``PLANTCDN_BODY_IDLE_TIMEOUT=1``) and checks
the same three facts: nothing is stored, no temporary file stays behind, and
the server goes on answering other clients.
"""

from __future__ import annotations

import resource
import selectors
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import INBOX, LONGTERM, RunningServer, clean_env, snapshot, temp_files, wait_until

HEADER_TIMEOUT = 2.0
BODY_IDLE_TIMEOUT = 1.0
MiB = 1024 * 1024

#: The slow-loris run: how many connections, for how long, and the bound on a
#: normal client's p99 latency meanwhile.
LORIS_CONNECTIONS = 200
LORIS_SECONDS = 8.0
P99_BOUND = 0.5


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A daemon with short header and body-idle deadlines."""
    data = tmp_path_factory.mktemp("faults")
    running = RunningServer(data, clean_env({
        "PLANTCDN_FSYNC": "false",
        "PLANTCDN_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "PLANTCDN_BODY_IDLE_TIMEOUT": str(BODY_IDLE_TIMEOUT),
    }))
    yield running
    running.stop()


# -- raw requests ---------------------------------------------------------------------


def _put_head(server: RunningServer, key: str, length: int) -> bytes:
    url = server.client().generate_presigned_url(  # type: ignore[attr-defined]
        "put_object", Params={"Bucket": INBOX, "Key": key}, ExpiresIn=300
    )
    return _head("PUT", url, length)


def _upload_part_head(server: RunningServer, key: str, length: int) -> tuple[bytes, str]:
    s3: Any = server.client()
    upload_id = s3.create_multipart_upload(Bucket=INBOX, Key=key)["UploadId"]
    url = s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": INBOX, "Key": key, "UploadId": upload_id, "PartNumber": 1},
        ExpiresIn=300,
    )
    return _head("PUT", url, length), upload_id


def _post_request(server: RunningServer, key: str, file_size: int) -> tuple[bytes, bytes]:
    """The head and the complete body of a presigned POST whose file has *file_size* bytes."""
    post = server.client().generate_presigned_post(INBOX, key)  # type: ignore[attr-defined]
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode()
        for name, value in post["fields"].items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    body = b"".join(parts) + b"p" * file_size + f"\r\n--{boundary}--\r\n".encode()
    path = urlsplit(post["url"]).path
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _head(method: str, url: str, length: int) -> bytes:
    parts = urlsplit(url)
    return (
        f"{method} {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _reset(sock: socket.socket) -> None:
    """Vanish: close with an RST, as a killed client or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _serves(server: RunningServer, key: str) -> None:
    """Another client is answered normally."""
    s3: Any = server.client()
    s3.put_object(Bucket=LONGTERM, Key=key, Body=b"still here")
    assert s3.get_object(Bucket=LONGTERM, Key=key)["Body"].read() == b"still here"


def _nothing_left(server: RunningServer, before: dict[str, bytes]) -> None:
    inbox = server.bucket_dir(INBOX)
    assert wait_until(lambda: temp_files(inbox) == [], timeout=15), temp_files(inbox)
    assert snapshot(inbox) == before


def _wait_for_temp(server: RunningServer) -> None:
    inbox = server.bucket_dir(INBOX)
    assert wait_until(lambda: temp_files(inbox) != [], timeout=15), "upload never started"


# -- vanishing and short clients ------------------------------------------------------------


@pytest.mark.parametrize("ending", ["reset", "short-then-close"])
@pytest.mark.parametrize("operation", ["PutObject", "PostObject", "UploadPart"])
def test_client_gone_mid_body_leaves_nothing(
    faulty: RunningServer, tenant: str, operation: str, ending: str
) -> None:
    """A body cut off (RST, or fewer bytes than Content-Length then FIN) stores nothing,
    its temporary file is removed, and the server keeps serving."""
    key = f"{tenant}/{operation}-{ending}.bin"
    before = snapshot(faulty.bucket_dir(INBOX))
    upload_id = None
    if operation == "PutObject":
        head, body = _put_head(faulty, key, 4 * MiB), b"b" * (4 * MiB)
    elif operation == "PostObject":
        head, body = _post_request(faulty, key, 4 * MiB)
    else:
        head, upload_id = _upload_part_head(faulty, key, 4 * MiB)
        body = b"u" * (4 * MiB)
    sock = _connect(faulty)
    sock.sendall(head + body[: len(body) // 2])
    if operation != "UploadPart":  # streamed: the temporary file exists mid-body
        _wait_for_temp(faulty)
    if ending == "reset":
        _reset(sock)
    else:
        sock.shutdown(socket.SHUT_WR)
        _read_all(sock)
        sock.close()
    _nothing_left(faulty, before)
    if upload_id is not None:
        s3: Any = faulty.client()
        assert s3.list_parts(Bucket=INBOX, Key=key, UploadId=upload_id).get("Parts", []) == []
    _serves(faulty, f"{tenant}/after-{operation}-{ending}")


@pytest.mark.parametrize("operation", ["PutObject", "PostObject", "UploadPart"])
def test_stalled_body_times_out_with_request_timeout(
    faulty: RunningServer, tenant: str, operation: str
) -> None:
    """A body that stops arriving gets S3's 400 RequestTimeout after the body idle timeout;
    nothing is stored and no temporary file stays."""
    key = f"{tenant}/{operation}-stalled.bin"
    before = snapshot(faulty.bucket_dir(INBOX))
    if operation == "PutObject":
        head, body = _put_head(faulty, key, MiB), b"s" * MiB
    elif operation == "PostObject":
        head, body = _post_request(faulty, key, MiB)
    else:
        head, _ = _upload_part_head(faulty, key, MiB)
        body = b"s" * MiB
    sock = _connect(faulty)
    started = time.monotonic()
    sock.sendall(head + body[: len(body) // 2])
    answer = _read_all(sock)
    waited = time.monotonic() - started
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"<Code>RequestTimeout</Code>" in answer
    assert BODY_IDLE_TIMEOUT * 0.9 <= waited < BODY_IDLE_TIMEOUT + 10
    _nothing_left(faulty, before)
    _serves(faulty, f"{tenant}/after-stall-{operation}")


def test_stalled_request_head_times_out(faulty: RunningServer) -> None:
    """Headers dribbled past the header timeout: 400 RequestTimeout and the connection closed,
    however steadily the bytes keep coming."""
    sock = _connect(faulty)
    started = time.monotonic()
    sock.sendall(b"GET /_plantcdn/health HTTP/1.1\r\n")
    answer = b""
    while time.monotonic() - started < HEADER_TIMEOUT + 10:
        try:
            sock.sendall(b"X")  # one header byte every 0.2 s keeps Twisted's idle timer happy
        except OSError:
            break
        sock.settimeout(0.2)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        answer += chunk
    waited = time.monotonic() - started
    sock.close()
    assert b"<Code>RequestTimeout</Code>" in answer
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 5


# -- slow loris ---------------------------------------------------------------------------


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class SlowLoris:
    """Keeps *count* connections open, each sending one header byte every *gap* seconds;
    a connection the server closes is replaced.  One thread-free selector loop."""

    def __init__(self, server: RunningServer, count: int, gap: float = 0.5) -> None:
        self.server = server
        self.count = count
        self.gap = gap
        self.selector = selectors.DefaultSelector()
        self.opened = 0
        self.cut: list[float] = []  # seconds each connection lived before the server closed it
        self.held_max = 0

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        sock.setblocking(False)
        sock.send(b"GET /_plantcdn/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.selector.register(sock, selectors.EVENT_READ, [time.monotonic(), 0.0])
        self.opened += 1

    def run(self, seconds: float) -> None:
        for _ in range(self.count):
            self._open()
        deadline = time.monotonic() + seconds
        next_dribble = time.monotonic()
        while time.monotonic() < deadline:
            for key, _ in self.selector.select(timeout=0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # the server closed it (after its RequestTimeout answer)
                    self.cut.append(time.monotonic() - key.data[0])
                    self.selector.unregister(sock)
                    sock.close()
                    self._open()
            now = time.monotonic()
            if now >= next_dribble:
                next_dribble = now + self.gap
                for key in list(self.selector.get_map().values()):
                    try:
                        key.fileobj.send(b"X")  # type: ignore[union-attr]
                    except OSError:
                        pass
            self.held_max = max(self.held_max, len(self.selector.get_map()))
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]


def test_slow_loris_cannot_starve_a_normal_client(faulty: RunningServer, tenant: str) -> None:
    """200 connections dribbling headers for 8 s: each is cut at the header timeout, and a
    normal client's p99 latency meanwhile stays under 500 ms."""
    import threading

    _raise_fd_limit(4 * LORIS_CONNECTIONS + 256)
    s3: Any = faulty.client()
    key = f"{tenant}/normal.bin"
    s3.put_object(Bucket=LONGTERM, Key=key, Body=b"n" * 4096)
    loris = SlowLoris(faulty, LORIS_CONNECTIONS)
    attack = threading.Thread(target=loris.run, args=(LORIS_SECONDS,), daemon=True)
    attack.start()
    latencies: list[float] = []
    session = requests.Session()
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": LONGTERM, "Key": f"{tenant}/normal-put.bin"},
        ExpiresIn=300,
    )
    assert wait_until(lambda: loris.held_max >= LORIS_CONNECTIONS, timeout=10)
    while attack.is_alive():
        started = time.monotonic()
        got = session.get(f"{faulty.url}/cdn/{key}", timeout=10)
        put = session.put(put_url, data=b"m" * 4096, timeout=10)
        latencies.append((time.monotonic() - started) / 2)
        assert got.status_code == 200 and len(got.content) == 4096
        assert put.status_code == 200
        time.sleep(0.01)
    attack.join(30)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"slow loris: {loris.held_max} slow connections held at once, {loris.opened} opened, "
        f"{len(loris.cut)} cut by the server after {min(loris.cut, default=0):.2f}-"
        f"{max(loris.cut, default=0):.2f} s; normal client {len(latencies)} requests, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )
    assert loris.held_max >= LORIS_CONNECTIONS
    assert len(loris.cut) >= LORIS_CONNECTIONS, "every slow connection is cut at the deadline"
    assert max(loris.cut) < HEADER_TIMEOUT + 8  # + time in the listen backlog on a busy box
    assert len(latencies) >= 20
    assert p99 < P99_BOUND


def test_service_raises_a_low_fd_limit(faulty: RunningServer) -> None:
    """The daemon lifts its soft open-file limit to at least 8192 when the hard limit allows."""
    limits = Path(f"/proc/{faulty.process.pid}/limits")
    if not limits.exists():
        pytest.skip("needs /proc")
    line = next(x for x in limits.read_text().splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert int(soft) >= min(8192, int(hard) if hard.isdigit() else 8192)


# -- pure: settings and the idle timer ---------------------------------------------------


def test_timeouts_come_from_the_environment() -> None:
    """PLANTCDN_HEADER_TIMEOUT / PLANTCDN_BODY_IDLE_TIMEOUT are seconds; 0 is off; junk is
    a configuration error, never a server without a deadline."""
    from plantcdn.config import Config, ConfigError

    config = Config.from_environ(
        {"PLANTCDN_HEADER_TIMEOUT": "5", "PLANTCDN_BODY_IDLE_TIMEOUT": "0.5"}, data_dir=Path(".")
    )
    assert (config.header_timeout, config.body_idle_timeout) == (5.0, 0.5)
    assert Config.from_environ({}, data_dir=Path(".")).header_timeout == 20.0
    for bad in ("soon", "-1", "nan", "1e9"):
        with pytest.raises(ConfigError):
            Config.from_environ({"PLANTCDN_BODY_IDLE_TIMEOUT": bad}, data_dir=Path("."))


def test_body_idle_timer_fires_only_after_a_full_quiet_period() -> None:
    """Pieces arriving reset the quiet period; the timer fires once it has passed whole."""
    from twisted.internet.task import Clock

    from plantcdn.connections import BodyIdleTimer

    clock = Clock()
    fired: list[float] = []
    timer = BodyIdleTimer(clock, 2.0, lambda: fired.append(clock.seconds()))
    for _ in range(5):
        clock.advance(1.5)
        timer.touch()
    assert fired == []
    clock.advance(1.9)
    assert fired == []
    clock.advance(0.2)
    assert fired == [pytest.approx(9.6)]
    timer.cancel()
    assert clock.getDelayedCalls() == []
