"""The /cdn edge lane: plain GETs of remembered objects answered without twisted.web.

What a browser or Django page observes must not depend on which path answered:
the same headers in the same order, the same bytes, the same access line and
metrics, a rewrite seen at once, conditionals and ranges still answered by the
full path (see ``plantcdn.edgelane`` and ``plantcdn.plainget``).
"""

from __future__ import annotations

import socket
import time

from conftest import LONGTERM, RunningServer, wait_until
from test_cdn_support import put
from test_ops import scrape, value

BODY = b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(range(256)) * 64
#: Header values that differ between any two answers, whichever path gives them.
PER_RESPONSE = {"date", "x-amz-cf-id", "age", "x-cache"}


class Connection:
    """One kept-alive HTTP/1.1 connection, requests written byte for byte."""

    def __init__(self, server: RunningServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.pending = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str, *fields: str) -> tuple[int, list[tuple[str, str]], bytes]:
        self.send(request(path, *fields))
        return self.response()

    def response(self, *, head: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.pending:
            self._recv()
        raw_head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(n, v) for n, _, v in (line.partition(": ") for line in lines[1:])]
        length = 0 if head else int(dict((n.lower(), v) for n, v in headers)["content-length"])
        while len(self.pending) < length:
            self._recv()
        body, self.pending = self.pending[:length], self.pending[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        return self.sock.recv(1) == b""

    def _recv(self) -> None:
        data = self.sock.recv(262144)
        assert data, "server closed the connection"
        self.pending += data


def request(path: str, *fields: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: cdn.example", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name.lower()), None)


def stable(headers: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    """Names in order; values too, except those that differ per response."""
    return [(n, None if n.lower() in PER_RESPONSE else v) for n, v in headers]


def test_remembered_object_is_answered_header_for_header_as_the_full_path(
    server: RunningServer, tenant: str
) -> None:
    key = f"{tenant}/photo.webp"
    put(server, key, BODY, ContentType="image/webp", CacheControl="public, max-age=600",
        ContentDisposition="inline", Metadata={"plant-id": "2", "Source": "worker"})
    with Connection(server) as conn:
        first = conn.get(f"/cdn/{key}")  # a miss: read from disk, remembered
        # A header the lane does not know sends a request down the full path.
        full = conn.get(f"/cdn/{key}", "X-Trace: 1")
        lane = conn.get(f"/cdn/{key}", "User-Agent: Mozilla/5.0", "Accept: image/webp,*/*")
    assert header(first[1], "X-Cache") == "Miss from cloudfront"
    assert full[0] == lane[0] == 200
    assert full[2] == lane[2] == BODY
    assert stable(lane[1]) == stable(full[1])
    assert header(lane[1], "X-Cache") == header(full[1], "X-Cache") == "Hit from cloudfront"
    assert header(lane[1], "Age") is not None
    assert header(lane[1], "x-amz-cf-id") != header(full[1], "x-amz-cf-id")
    assert [n for n, _ in lane[1]][:7] == [
        "Server", "Date", "Via", "x-amz-cf-pop", "x-amz-cf-id", "X-Cache", "Age",
    ]
    assert header(lane[1], "x-amz-meta-plant-id") == "2"
    assert header(lane[1], "Content-Length") == str(len(BODY))


def test_rewrite_is_seen_at_once_on_a_kept_alive_connection(
    server: RunningServer, tenant: str
) -> None:
    key = f"{tenant}/variant.webp"
    put(server, key, b"version one", ContentType="image/webp")
    with Connection(server) as conn:
        conn.get(f"/cdn/{key}")
        assert conn.get(f"/cdn/{key}")[2] == b"version one"
        reply = put(server, key, b"version two!", ContentType="image/png")
        status, headers, body = conn.get(f"/cdn/{key}")
        again = conn.get(f"/cdn/{key}")
    assert (status, body) == (200, b"version two!")
    assert header(headers, "ETag") == reply["ETag"]
    assert header(headers, "Content-Type") == "image/png"
    assert header(headers, "X-Cache") == "Miss from cloudfront"
    assert again[2] == b"version two!"
    assert header(again[1], "X-Cache") == "Hit from cloudfront"


def test_deleted_object_is_not_served_from_memory(server: RunningServer, tenant: str) -> None:
    key = f"{tenant}/gone.webp"
    put(server, key, BODY, ContentType="image/webp")
    with Connection(server) as conn:
        conn.get(f"/cdn/{key}")
        conn.get(f"/cdn/{key}")
        server.client().delete_object(Bucket=LONGTERM, Key=key)  # type: ignore[attr-defined]
        status, _, body = conn.get(f"/cdn/{key}")
    assert status == 404
    assert b"<Code>NoSuchKey</Code>" in body


def test_conditional_and_range_requests_of_a_remembered_object_keep_their_answers(
    server: RunningServer, tenant: str
) -> None:
    key = f"{tenant}/cond.webp"
    etag = put(server, key, BODY, ContentType="image/webp")["ETag"]
    with Connection(server) as conn:
        conn.get(f"/cdn/{key}")
        conn.get(f"/cdn/{key}")
        conn.send(request(f"/cdn/{key}", f"If-None-Match: {etag}"))
        not_modified = conn.response(head=True)
        partial = conn.get(f"/cdn/{key}", "Range: bytes=0-3")
    assert not_modified[0] == 304
    assert (partial[0], partial[2]) == (206, BODY[:4])
    assert header(partial[1], "Content-Range") == f"bytes 0-3/{len(BODY)}"


def test_pipelined_gets_are_answered_in_order(server: RunningServer, tenant: str) -> None:
    keys = [f"{tenant}/p{i}.webp" for i in range(3)]
    for i, key in enumerate(keys):
        put(server, key, f"body {i}".encode(), ContentType="image/webp")
    with Connection(server) as conn:
        for key in keys:
            conn.get(f"/cdn/{key}")  # remembered
        conn.send(b"".join(request(f"/cdn/{key}") for key in reversed(keys)))
        bodies = [conn.response()[2] for _ in keys]
    assert bodies == [b"body 2", b"body 1", b"body 0"]


def test_connection_close_is_honoured(server: RunningServer, tenant: str) -> None:
    key = f"{tenant}/close.webp"
    put(server, key, b"bytes", ContentType="image/webp")
    with Connection(server) as conn:
        conn.get(f"/cdn/{key}")
        status, _, body = conn.get(f"/cdn/{key}", "Connection: close")
        assert (status, body) == (200, b"bytes")
        assert conn.closed_by_server()


def test_every_answer_is_counted_and_logged(server: RunningServer, tenant: str) -> None:
    key = f"{tenant}/counted.webp"
    put(server, key, BODY, ContentType="image/webp")
    before = scrape(server)
    with Connection(server) as conn:
        for _ in range(5):
            assert conn.get(f"/cdn/{key}")[0] == 200
    after = scrape(server)
    requests = ("plantcdn_requests_total", {"operation": "CdnGet", "status": "200"})
    sent = ("plantcdn_sent_bytes_total", {"operation": "CdnGet"})
    assert value(after, requests[0], **requests[1]) - value(before, requests[0], **requests[1]) == 5
    assert value(after, sent[0], **sent[1]) - value(before, sent[0], **sent[1]) == 5 * len(BODY)
    line = f'"GET /cdn/{key}" CdnGet 200 in=0 out={len(BODY)} '
    assert wait_until(lambda: server.log_text.count(line) == 5)


def test_kept_alive_connection_outlives_the_header_deadline(start_server, tenant: str) -> None:
    """The deadline armed when the connection opened ends with the request it timed."""
    server = start_server(PLANTCDN_HEADER_TIMEOUT="0.5")
    key = f"{tenant}/slow-reader.webp"
    put(server, key, b"bytes", ContentType="image/webp")
    with Connection(server) as conn:
        conn.get(f"/cdn/{key}")
    with Connection(server) as conn:
        assert conn.get(f"/cdn/{key}")[2] == b"bytes"  # answered by the lane
        time.sleep(1.0)
        assert conn.get(f"/cdn/{key}")[0] == 200
