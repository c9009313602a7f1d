"""Concurrent writers and readers of one key: never a mixture, never a torn read.

Every body carries its own index, and every PUT stores that index as
Content-Type and user metadata, so any pairing of one upload's bytes with
another's metadata shows up.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import requests
from conftest import LONGTERM, RunningServer

WRITERS = 12
PUTS_PER_WRITER = 6
READERS = 4


def _body(index: int) -> bytes:
    """Body *index*: its sizes differ (1 KiB .. 768 KiB) and it starts with its index."""
    size = 1024 * (1 + (index * 37) % 768)
    head = f"body-{index:04d};".encode()
    return head + bytes([index % 251]) * (size - len(head))


def _index(body: bytes) -> int:
    return int(body[5:9])


def _check_whole(body: bytes, etag: str, content_type: str, meta: dict[str, str]) -> int:
    """Assert a response is one complete upload with its own metadata; its index."""
    index = _index(body)
    assert body == _body(index), "torn or mixed body"
    assert etag.strip('"') == hashlib.md5(body).hexdigest(), "ETag of another body"
    assert content_type == f"application/x-body-{index}", "Content-Type of another body"
    assert meta == {"index": str(index)}, "metadata of another body"
    return index


def test_concurrent_puts_and_reads_of_one_key_never_mix(server: RunningServer, tenant: str) -> None:
    """72 PUTs of different bodies to one key from 12 threads while 4 threads read it
    (GetObject and /cdn): every read is one whole body with its own ETag and metadata,
    and the final object is exactly one of the bodies."""
    key = f"{tenant}/contended.bin"
    seed: Any = server.client()
    seed.put_object(Bucket=LONGTERM, Key=key, Body=_body(0), ContentType="application/x-body-0",
                    Metadata={"index": "0"})
    stop = threading.Event()
    errors: list[BaseException] = []
    reads: list[int] = []

    def write(worker: int) -> None:
        s3: Any = server.client()
        try:
            for n in range(PUTS_PER_WRITER):
                index = 1 + worker * PUTS_PER_WRITER + n
                s3.put_object(Bucket=LONGTERM, Key=key, Body=_body(index),
                              ContentType=f"application/x-body-{index}",
                              Metadata={"index": str(index)})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def read(reader: int) -> None:
        s3: Any = server.client()
        session = requests.Session()
        try:
            while not stop.is_set():
                if reader % 2:
                    got = s3.get_object(Bucket=LONGTERM, Key=key)
                    index = _check_whole(got["Body"].read(), got["ETag"], got["ContentType"],
                                         got["Metadata"])
                else:
                    response = session.get(f"{server.url}/cdn/{key}", timeout=30)
                    assert response.status_code == 200
                    meta = {
                        name[len("x-amz-meta-"):]: value
                        for name, value in response.headers.items()
                        if name.lower().startswith("x-amz-meta-")
                    }
                    index = _check_whole(response.content, response.headers["ETag"],
                                         response.headers["Content-Type"], meta)
                reads.append(index)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(READERS)]
    writers = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    for thread in readers:
        thread.join(60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in readers + writers)
    final: Any = seed.get_object(Bucket=LONGTERM, Key=key)
    index = _check_whole(final["Body"].read(), final["ETag"], final["ContentType"],
                         final["Metadata"])
    assert 1 <= index <= WRITERS * PUTS_PER_WRITER
    on_disk = (server.bucket_dir(LONGTERM) / key).read_bytes()
    assert on_disk == _body(index)
    assert len(reads) >= READERS
    print(f"concurrency: {WRITERS * PUTS_PER_WRITER} PUTs to one key, {len(reads)} whole reads "
          f"({len(set(reads))} distinct versions seen), final = body {index}")
