"""Helpers shared by the ``/cdn`` tests (this module holds no tests).

Requests go out on plain sockets or ``http.client`` so that no client library
normalises the path before plantcdn sees it.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from conftest import LONGTERM, RunningServer

__all__ = ["Reply", "fetch", "put", "raw_get"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    all_headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def fetch(
    server: RunningServer,
    path: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request on a fresh connection, path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        pairs = [(k.lower(), v) for k, v in response.getheaders()]
        joined: dict[str, str] = {}
        for name, value in pairs:
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        return Reply(response.status, joined, body, pairs)
    finally:
        conn.close()


def raw_get(server: RunningServer, raw_path: bytes, method: bytes = b"GET") -> tuple[int, bytes]:
    """Send *raw_path* byte for byte (NUL, backslashes, anything) and return status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            method + b" " + raw_path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body


def put(server: RunningServer, key: str, body: bytes, **kwargs: object) -> dict[str, object]:
    """PutObject into the long-term bucket with boto3 (the way Plant-DB's worker writes)."""
    client = server.client()
    return client.put_object(Bucket=LONGTERM, Key=key, Body=body, **kwargs)  # type: ignore[attr-defined,no-any-return]
