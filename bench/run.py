"""plantcdn benchmark: throughput, latency, peak RSS and CPU of the real daemon.

Usage (from the repository root, after ``bash scripts/test.sh`` made ``.venv``)::

    .venv/bin/python bench/run.py            # full run (1 GiB uploads), a few minutes
    .venv/bin/python bench/run.py --quick    # small sizes, ~1 minute
    .venv/bin/python bench/run.py --refs     # also nginx, s3rver and moto, taking turns

Load for small requests comes from ``wrk`` (Debian package ``wrk``) replaying
pre-signed requests from a Lua script, so the client is not the bottleneck;
large transfers use a streaming Python client.  All servers (plantcdn, its
``--workers`` and fsync=true variants, and with ``--refs`` nginx, s3rver and
moto) stay up for the whole run, and each scenario is measured in ``--runs``
rounds in which the servers take turns, back to back, the order reversed
every other round; ratios are the median of the rounds' ratios, so a slow
minute of a noisy machine falls on both sides of each.  Each server's median
is reported with its peak RSS (VmHWM, reset before each run), CPU seconds and
status mix: a run with any unexpected status is marked as not a result.
Results are written to ``bench/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parent.parent
ACCESS = "PLANTCDNDEVACCESSKEY"
SECRET = "plantcdn-dev-secret-key-do-not-use-in-prod"
REGION = "us-east-1"
INBOX = "plantdb-inbox"
LONGTERM = "plantdb-longterm"
KiB = 1024
#: Distinct keys the 64 KiB PUT scenario cycles through (one pre-signed request each).
PUT_KEYS = 2000
MiB = 1024 * KiB
#: The 64 KiB object the GET scenarios read.
SMALL_KEY = "company_1/plant_1/bench64k.webp"
FSYNC_LABEL = "plantcdn fsync=true"


# -- the server under test -----------------------------------------------------------


class ProcReadings:
    """Peak RSS and CPU seconds of a server's processes, from /proc."""

    process: Any

    def pids(self) -> list[int]:
        pids = [self.process.pid]
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            pass
        return pids

    def reset_peak(self) -> None:
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass

    def peak_rss_mib(self) -> float:
        peak = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"VmHWM:\s+(\d+) kB", status)
            if m:
                peak = max(peak, int(m.group(1)))
        return peak / 1024

    def wait_settled(self) -> None:
        """Until work the server does after its answers is done (see Daemon's)."""

    def cpu_seconds(self) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total


class RefServer(ProcReadings):
    """A reference server (moto, s3rver) started by bench/refs.py."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref
        self.process = type("P", (), {"pid": ref.pid})()
        self.url = ref.url
        self.port = int(ref.url.rsplit(":", 1)[1])
        self.access_key, self.secret_key = ref.access_key, ref.secret_key

    def stop(self) -> None:
        self.ref.stop()


class Daemon(ProcReadings):
    """``twistd -n plantcdn`` on a free loopback port, with /proc readings of its process."""

    def __init__(self, data: Path, *, fsync: bool, workers: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PLANTCDN_"))}
        env["PLANTCDN_FSYNC"] = "true" if fsync else "false"
        twistd = str(Path(sys.executable).with_name("twistd"))
        args = [twistd, "-n", "--pidfile=", f"--logfile={data / 'plantcdn.log'}", "plantcdn",
                "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", str(data)]
        if workers:
            args += ["--workers", str(workers)]
        self.data = data
        self.process = subprocess.Popen(args, cwd=data, env=env)
        self.port = 0
        deadline = time.monotonic() + 30
        log = data / "plantcdn.log"
        while time.monotonic() < deadline and self.port == 0:
            if log.exists():
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.05)
        if not self.port:
            self.stop()
            raise RuntimeError("plantcdn did not start")
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_key, self.secret_key = ACCESS, SECRET

    def wait_settled(self, timeout: float = 60.0) -> None:
        """Until the reaper thread has removed what the last run replaced or deleted
        (``.plantcdn/tmp`` empty, no ``.gone-`` upload folder left): that work is
        then part of this run's CPU seconds, and not done during the next server's run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._left_to_remove()):
            time.sleep(0.05)

    def _left_to_remove(self) -> Iterator[Path]:
        for bucket in ("s3_inbox", "s3_longterm"):
            internal = self.data / bucket / ".plantcdn"
            for folder, prefix in ((internal / "tmp", ""), (internal / "multipart", ".gone-")):
                if folder.is_dir():
                    yield from (p for p in folder.iterdir() if p.name.startswith(prefix))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


# -- signing helpers ---------------------------------------------------------------


class _KnownPayloadAuth(botocore.auth.S3SigV4Auth):
    """SigV4 with a payload hash computed beforehand (a body streamed later)."""

    payload_hash: str | None = None

    def payload(self, request: Any) -> str:
        return self.payload_hash or super().payload(request)


def signed_put(url: str, body: bytes, headers: dict[str, str] | None = None,
               payload_hash: str | None = None,
               keys: tuple[str, str] = (ACCESS, SECRET)) -> dict[str, str]:
    """Headers of a SigV4 PutObject with the real payload hash (valid for 15 minutes)."""
    request = botocore.awsrequest.AWSRequest(method="PUT", url=url, data=body,
                                             headers=headers or {})
    creds = botocore.credentials.Credentials(*keys)
    auth = _KnownPayloadAuth(creds, "s3", REGION)
    auth.payload_hash = payload_hash
    auth.add_auth(request)
    prepared = request.prepare()
    return {k: v for k, v in prepared.headers.items()}


def client(url: str, keys: tuple[str, str] = (ACCESS, SECRET), **config: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name=REGION, aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        config=BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                          request_checksum_calculation="when_required", **config),
    )


# -- wrk ---------------------------------------------------------------------------

WRK_LUA = r"""
wrk.method = "%(method)s"
%(headers)s
%(body)s
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_ms": %%.3f, "p99_ms": %%.3f, ' ..
    '"errors": %%d, "non_2xx": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.errors.status))
end
"""


def wrk(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
        body_file: Path | None = None, connections: int = 16, seconds: int = 5,
        threads: int = 2, requests: list[tuple[str, dict[str, str]]] | None = None,
        ) -> dict[str, Any]:
    """One wrk run; the Lua script replays the same (pre-signed) request, or cycles
    through *requests* (``(path, headers)`` pairs, each signed for its own key)."""
    lua_headers = "\n".join(
        f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()
        if k.lower() not in ("host",)
    )
    lua_body = ""
    if body_file is not None:
        lua_body = f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()'
    if requests:
        lua_headers += "\n" + _lua_request_cycle(requests, threads)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA % {"method": method, "headers": lua_headers, "body": lua_body})
    try:
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
             "--latency", "-s", script.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _lua_request_cycle(requests: list[tuple[str, dict[str, str]]], threads: int) -> str:
    """A wrk ``request()`` that sends the pre-signed requests in turn (each thread
    starts at its own offset), so every PUT names its own key, as real uploads do."""
    rows = []
    for path, headers in requests:
        pairs = ", ".join(
            f'["{k}"] = "{v}"' for k, v in headers.items() if k.lower() not in ("host",)
        )
        rows.append(f'{{"{path}", {{{pairs}}}}}')
    return (
        "local signed = {\n" + ",\n".join(rows) + "\n}\n"
        "local counter = 0\n"
        f"setup = function(thread) thread:set('offset', counter * {len(requests) // threads}); "
        "counter = counter + 1 end\n"
        "init = function(args) offset = offset or 0 end\n"
        "request = function()\n"
        "  offset = offset + 1\n"
        "  local r = signed[(offset % #signed) + 1]\n"
        "  return wrk.format(nil, r[1], r[2], nil)\n"
        "end\n"
    )


# -- scenarios -------------------------------------------------------------------------


def pattern(size: int, step: int = MiB) -> Iterator[bytes]:
    block = (b"plantcdn-benchmark-" * (step // 19 + 1))[:step]
    sent = 0
    while sent < size:
        piece = block[: min(step, size - sent)]
        sent += len(piece)
        yield piece


def sha256_of(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern(size):
        digest.update(piece)
    return digest.hexdigest()


def big_put(daemon: Daemon, size: int) -> dict[str, Any]:
    """One PutObject of *size* bytes with its real SHA-256, streamed by the client."""
    key = f"company_1/plant_1/bench-{size}.bin"
    url = f"{daemon.url}/{LONGTERM}/{key}"
    headers = signed_put(url, b"", payload_hash=sha256_of(size),
                         keys=(daemon.access_key, daemon.secret_key))
    headers["Content-Length"] = str(size)
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=600)
    start = time.perf_counter()
    conn.putrequest("PUT", f"/{LONGTERM}/{key}", skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    for piece in pattern(size):
        conn.send(piece)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    return {"status": response.status, "seconds": elapsed, "mb_s": size / MiB / elapsed}


def big_cdn_get(daemon: Daemon, size: int) -> dict[str, Any]:
    """Read the object big_put stored back through /cdn, counting bytes as they come."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=600)
    start = time.perf_counter()
    conn.request("GET", f"/cdn/company_1/plant_1/bench-{size}.bin")
    response = conn.getresponse()
    received = 0
    while chunk := response.read(MiB):
        received += len(chunk)
    elapsed = time.perf_counter() - start
    status = response.status if received == size else 500
    return {"status": status, "seconds": elapsed, "mb_s": size / MiB / elapsed}


def big_post(daemon: Daemon, size: int) -> dict[str, Any]:
    """One presigned POST of *size* bytes, the multipart body streamed by the client."""
    keys = (daemon.access_key, daemon.secret_key)
    post = client(daemon.url, keys).generate_presigned_post(
        INBOX, f"company_1/plant_1/post-{size}.bin",
        Conditions=[["content-length-range", 0, size]],
    )
    boundary = "----plantcdnbench"
    pre = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in post["fields"].items()
    )
    pre += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n")
    post_end = f"\r\n--{boundary}--\r\n".encode()
    length = len(pre.encode()) + size + len(post_end)
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=600)
    start = time.perf_counter()
    conn.putrequest("POST", f"/{INBOX}", skip_accept_encoding=True)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    conn.send(pre.encode())
    for piece in pattern(size):
        conn.send(piece)
    conn.send(post_end)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    return {"status": response.status, "seconds": elapsed, "mb_s": size / MiB / elapsed}


def oversize_post_consumed(daemon: Daemon, size: int, maximum: int) -> dict[str, Any]:
    """Bytes a POST of *size* against a *maximum* content-length-range had sent when
    the server's answer arrived."""
    post = client(daemon.url).generate_presigned_post(
        INBOX, "company_1/plant_1/oversize.bin", Conditions=[["content-length-range", 0, maximum]]
    )
    boundary = "----plantcdnbench"
    pre = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in post["fields"].items()
    )
    pre += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="o"\r\n\r\n'
    head = (f"POST /{INBOX} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(pre) + size + 8}\r\n\r\n").encode() + pre.encode()
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sock.sendall(head)
    sent = 0
    block = b"o" * (64 * KiB)
    answer = b""
    sock.setblocking(False)
    while sent < size:
        readable, writable, _ = select.select([sock], [sock], [], 5)
        if readable:
            answer = sock.recv(4096)
            break
        if writable:
            try:
                sent += sock.send(block[: min(len(block), size - sent)])
            except BlockingIOError:
                pass
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return {"status": status, "sent_mib": sent / MiB, "maximum_mib": maximum / MiB,
            "code": "EntityTooLarge" if b"EntityTooLarge" in answer else None}


def multipart_upload(daemon: Daemon, size: int, scratch: Path) -> dict[str, Any]:
    from boto3.s3.transfer import TransferConfig

    path = scratch / "multipart.bin"
    with path.open("wb") as f:
        for piece in pattern(size):
            f.write(piece)
    s3 = client(daemon.url)
    start = time.perf_counter()
    s3.upload_file(str(path), INBOX, f"company_1/plant_1/mp-{size}.bin",
                   Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=16 * MiB,
                                         max_concurrency=4))
    elapsed = time.perf_counter() - start
    path.unlink()
    return {"status": 200, "seconds": elapsed, "mb_s": size / MiB / elapsed}


def list_10k(daemon: Daemon, data: Path, count: int) -> dict[str, Any]:
    """ListObjectsV2 over *count* keys (written as files directly, like a person copying in)."""
    folder = data / "s3_inbox" / "company_9" / "plant_9"
    for i in range(count):
        sub = folder / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"k{i:05d}.txt").write_bytes(b"x")
    s3 = client(daemon.url)
    start = time.perf_counter()
    keys = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=INBOX, Prefix="company_9/plant_9/"
    ):
        keys += page.get("KeyCount", 0)
    elapsed = time.perf_counter() - start
    return {"status": 200 if keys == count else 500, "seconds": elapsed, "keys": keys}


# -- orchestration -----------------------------------------------------------------------


def measured(daemon: Daemon, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    # Start with the disk caught up: otherwise a run competes with the kernel flushing
    # what earlier runs wrote (a --workers 2 PUT run right after 3 GiB of writes had a
    # p99 of 839 ms, against 251 ms once they were flushed).
    os.sync()
    daemon.reset_peak()
    cpu = daemon.cpu_seconds()
    result = fn()
    daemon.wait_settled()
    result["peak_rss_mib"] = round(daemon.peak_rss_mib(), 1)
    result["cpu_s"] = round(daemon.cpu_seconds() - cpu, 2)
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def ok_statuses(result: dict[str, Any], expected: int) -> bool:
    if "non_2xx" not in result:
        return result.get("status") == expected
    return result["non_2xx"] == 0 and result["errors"] == 0 and result["requests"] > 0


@dataclass
class Contender:
    """One server of the run and what its small-request scenarios replay (seeded once)."""

    label: str
    server: Any  # Daemon, RefServer or Nginx: url, port, key pair and /proc readings
    put_requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    get_url: str = ""


def seeded(label: str, server: Any, body: bytes) -> Contender:
    """Store the 64 KiB object the GETs read and pre-sign the PUTs, as *server*'s client."""
    keys = (server.access_key, server.secret_key)
    # Each replayed PUT names its own key (as uploads do), signed beforehand.
    put_requests = [
        (f"/{LONGTERM}/company_1/plant_1/bench-{i}.webp",
         signed_put(f"{server.url}/{LONGTERM}/company_1/plant_1/bench-{i}.webp", body,
                    {"Content-Type": "image/webp"}, keys=keys))
        for i in range(PUT_KEYS)
    ]
    s3 = client(server.url, keys)
    s3.put_object(Bucket=LONGTERM, Key=SMALL_KEY, Body=body, ContentType="image/webp")
    get_url = s3.generate_presigned_url("get_object",
                                        Params={"Bucket": LONGTERM, "Key": SMALL_KEY})
    return Contender(label, server, put_requests, get_url)


def warm_up(k: Contender, body_file: Path) -> None:
    """A second of each small request before anything is measured, so no server's
    first measured run also pays for its warm-up (node's JIT, plantcdn's caches)."""
    if k.put_requests:
        wrk(f"{k.server.url}/{LONGTERM}/{SMALL_KEY}", method="PUT", body_file=body_file,
            requests=k.put_requests, seconds=1)
        wrk(k.get_url, seconds=1)
    if not isinstance(k.server, RefServer):  # plantcdn and nginx serve /cdn
        wrk(f"{k.server.url}/cdn/{SMALL_KEY}", seconds=1)


@dataclass
class Scenario:
    """One measurement, run in turn against each of *labels* that this run started."""

    name: str
    labels: list[str]
    run: Callable[[Contender], dict[str, Any]]
    expected: int = 200
    metric: str = "rps"
    large: bool = False


def scenarios(args: argparse.Namespace, body_file: Path, scratch: Path) -> list[Scenario]:
    c, seconds = args.connections, args.seconds
    size, mib = args.large_mib * MiB, args.large_mib
    plant, workers, durable = "plantcdn", f"plantcdn --workers {args.workers}", FSYNC_LABEL

    def put(conns: int) -> Callable[[Contender], dict[str, Any]]:
        return lambda k: wrk(f"{k.server.url}/{LONGTERM}/{SMALL_KEY}", method="PUT",
                             body_file=body_file, requests=k.put_requests,
                             connections=conns, seconds=seconds)

    def cdn(conns: int) -> Callable[[Contender], dict[str, Any]]:
        return lambda k: wrk(f"{k.server.url}/cdn/{SMALL_KEY}", connections=conns,
                             seconds=seconds)

    listed = [
        Scenario(f"PUT 64 KiB SigV4 c{c}", [plant, workers, durable, "s3rver", "moto"], put(c)),
        Scenario("PUT 64 KiB SigV4 c64", [plant, workers, "s3rver"], put(64)),
        Scenario(f"GET 64 KiB /cdn c{c}", [plant, workers, "nginx"], cdn(c)),
        Scenario("GET 64 KiB /cdn c64", [plant, workers, "nginx"], cdn(64)),
        Scenario(f"GET 64 KiB GetObject c{c}", [plant, workers, "s3rver", "moto"],
                 lambda k: wrk(k.get_url, connections=c, seconds=seconds)),
        Scenario(f"PutObject {mib} MiB", [plant, "s3rver", "moto"],
                 lambda k: big_put(k.server, size), metric="mb_s", large=True),
        Scenario(f"GET {mib} MiB via /cdn", [plant, "nginx"],
                 lambda k: big_cdn_get(k.server, size), metric="mb_s", large=True),
        Scenario(f"presigned POST {mib} MiB", [plant, "s3rver"],
                 lambda k: big_post(k.server, size), expected=204, metric="mb_s", large=True),
        Scenario(f"multipart upload_file {mib} MiB", [plant],
                 lambda k: multipart_upload(k.server, size, scratch), metric="mb_s",
                 large=True),
    ]
    # With --connections 64 the c64 scenarios are listed twice: keep the first.
    return [sc for i, sc in enumerate(listed) if sc.name not in {x.name for x in listed[:i]}]


def run_scenario(scenario: Scenario, contenders: dict[str, Contender],
                 runs: int) -> dict[str, Any]:
    """*runs* rounds of the scenario, one run per server each round, the order reversed
    every other round: servers are measured back to back, so a slow minute of a noisy
    machine falls on all of them, and run i of one pairs with run i of another."""
    present = [contenders[label] for label in scenario.labels if label in contenders]
    per: dict[str, list[dict[str, Any]]] = {k.label: [] for k in present}
    for round_ in range(runs):
        for k in present if round_ % 2 == 0 else present[::-1]:
            per[k.label].append(measured(k.server, lambda k=k: scenario.run(k)))
    return {f"{label}: {scenario.name}": summarize(rs, scenario.expected, scenario.metric)
            for label, rs in per.items()}


def summarize(runs: list[dict[str, Any]], expected: int, metric: str) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "runs": runs,
        "valid": all(ok_statuses(r, expected) for r in runs),
        metric: round(median_of(runs, metric), 1),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "cpu_s": round(median_of(runs, "cpu_s"), 2),
    }
    for extra in ("p50_ms", "p99_ms", "seconds"):
        if extra in runs[0]:
            summary[extra] = round(median_of(runs, extra), 3)
    return summary


def paired_ratios(a: dict[str, Any], b: dict[str, Any]) -> list[float]:
    """Run i of *a* over run i of *b*, round by round (they ran back to back)."""
    metric = "rps" if "rps" in a else "mb_s"
    return [x[metric] / y[metric] for x, y in zip(a["runs"], b["runs"], strict=True)]


class Nginx(ProcReadings):
    """nginx serving plantcdn's long-term folder under /cdn/: the ceiling for /cdn."""

    def __init__(self, folder: Path, scratch: Path) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        conf = scratch / "nginx.conf"
        conf.write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1; daemon off; pid {scratch}/nginx.pid; "
            f"error_log {scratch}/error.log;\n"
            "events { worker_connections 1024; }\n"
            f"http {{ access_log off; client_body_temp_path {scratch}; "
            f"proxy_temp_path {scratch};\n"
            f"  fastcgi_temp_path {scratch}; uwsgi_temp_path {scratch}; "
            f"scgi_temp_path {scratch};\n"
            f"  server {{ listen 127.0.0.1:{self.port}; "
            f"location /cdn/ {{ alias {folder}/; }} }} }}\n"
        )
        self.process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(scratch)])
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_key = self.secret_key = ""
        time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_references(stack: ExitStack, data: Path, body: bytes) -> dict[str, Contender]:
    """moto and s3rver, the S3 stand-ins people use instead, each seeded like plantcdn."""
    import refs

    available = refs.prepare()
    out: dict[str, Contender] = {}
    for name in ("s3rver", "moto"):
        if not available.get(name):
            print(f"{name} is not available; skipped", file=sys.stderr)
            continue
        folder = data / f"{name}-data"
        folder.mkdir(exist_ok=True)
        ref = (refs.start_s3rver([LONGTERM, INBOX], folder) if name == "s3rver"
               else refs.start_moto([LONGTERM, INBOX]))
        server = RefServer(ref)
        stack.callback(server.stop)
        out[name] = seeded(name, server, body)
    return out


def run_plantcdn_only(daemon: Daemon, args: argparse.Namespace) -> dict[str, Any]:
    """What has no reference: the early cut-off of an oversize POST and a long listing."""
    out: dict[str, Any] = {}
    runs = [measured(daemon, lambda: oversize_post_consumed(daemon, 200 * MiB, 10 * MiB))]
    out["plantcdn: POST 200 MiB vs 10 MiB content-length-range"] = {
        "runs": runs, "valid": runs[0]["status"] == 400,
        "sent_mib": round(runs[0]["sent_mib"], 1), "peak_rss_mib": runs[0]["peak_rss_mib"],
        "cpu_s": runs[0]["cpu_s"],
    }
    runs = [measured(daemon, lambda: list_10k(daemon, daemon.data, args.list_keys))]
    out[f"plantcdn: ListObjectsV2 over {args.list_keys} keys"] = summarize(runs, 200, "seconds")
    return out


def ratio_rows(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    c, mib, w = args.connections, args.large_mib, f"plantcdn --workers {args.workers}"
    return {
        "/cdn GET vs nginx (c64)": ("plantcdn: GET 64 KiB /cdn c64", "nginx: GET 64 KiB /cdn c64"),
        f"/cdn GET --workers {args.workers} vs nginx (c64)": (
            f"{w}: GET 64 KiB /cdn c64", "nginx: GET 64 KiB /cdn c64"),
        f"PUT 64 KiB vs s3rver (c{c})": (f"plantcdn: PUT 64 KiB SigV4 c{c}",
                                         f"s3rver: PUT 64 KiB SigV4 c{c}"),
        f"PUT 64 KiB vs moto (c{c})": (f"plantcdn: PUT 64 KiB SigV4 c{c}",
                                       f"moto: PUT 64 KiB SigV4 c{c}"),
        f"PUT 64 KiB fsync=true vs fsync=false (c{c})": (
            f"{FSYNC_LABEL}: PUT 64 KiB SigV4 c{c}", f"plantcdn: PUT 64 KiB SigV4 c{c}"),
        f"GetObject 64 KiB vs s3rver (c{c})": (f"plantcdn: GET 64 KiB GetObject c{c}",
                                               f"s3rver: GET 64 KiB GetObject c{c}"),
        f"PutObject {mib} MiB vs s3rver": (f"plantcdn: PutObject {mib} MiB",
                                           f"s3rver: PutObject {mib} MiB"),
        f"PutObject {mib} MiB vs moto": (f"plantcdn: PutObject {mib} MiB",
                                         f"moto: PutObject {mib} MiB"),
        f"presigned POST {mib} MiB vs s3rver": (f"plantcdn: presigned POST {mib} MiB",
                                                f"s3rver: presigned POST {mib} MiB"),
        f"GET {mib} MiB via /cdn vs nginx": (f"plantcdn: GET {mib} MiB via /cdn",
                                             f"nginx: GET {mib} MiB via /cdn"),
    }


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Benchmark of plantcdn {meta['when']} on {meta['cpus']} cores "
             f"(median of {meta['runs']} runs, {meta['large_runs']} for the large transfers, "
             "servers taking turns; load generator on the same machine).", "",
             "| scenario | result | p50 ms | p99 ms | peak RSS MiB | CPU s | valid |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "rps" in r:
            value = f"{r['rps']:.0f} req/s"
        elif "mb_s" in r:
            value = f"{r['mb_s']:.0f} MB/s"
        elif "sent_mib" in r:
            value = f"answered after {r['sent_mib']} MiB sent"
        else:
            value = f"{r.get('seconds', 0):.2f} s"
        lines.append(f"| {name} | {value} | {r.get('p50_ms', '')} | {r.get('p99_ms', '')} | "
                     f"{r['peak_rss_mib']} | {r['cpu_s']} | {'yes' if r['valid'] else 'NO'} |")
    if meta["ratios"]:
        lines += ["", "| ratio (median of the rounds' ratios) | value | each round |",
                  "|---|---|---|"]
    for label, rounds in meta["ratios"].items():
        each = " / ".join(f"{x:.2f}" for x in rounds)
        valid = "" if label in meta["valid_ratios"] else " (NO: a run had errors)"
        lines.append(f"| {label} | {statistics.median(rounds):.2f}{valid} | {each} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs")
    parser.add_argument("--refs", action="store_true",
                        help="also nginx, s3rver and moto, taking turns with plantcdn")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--large-runs", type=int, default=3)
    parser.add_argument("--list-keys", type=int, default=10_000)
    parser.add_argument("--fsync", action="store_true", help="PLANTCDN_FSYNC=true")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure the small requests with --workers N (1: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.large_runs, args.seconds = 1, 1, 2
        args.large_mib, args.list_keys = 64, 2000
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="plantcdn-bench-") as tmp, ExitStack() as stack:
        data = Path(tmp)
        body = (b"0123456789abcdef" * 4096)[: 64 * KiB]
        body_file = data / "body64k.bin"
        body_file.write_bytes(body)

        def daemon(name: str, **options: Any) -> Daemon:
            folder = data / name
            folder.mkdir()
            started = Daemon(folder, **options)
            stack.callback(started.stop)
            return started

        # Every server is up for the whole run (idle ones cost nothing), so each
        # scenario can measure them in turns, back to back.
        plant = daemon("plantcdn", fsync=args.fsync)
        contenders = {"plantcdn": seeded("plantcdn", plant, body)}
        if args.workers > 1:
            label = f"plantcdn --workers {args.workers}"
            contenders[label] = seeded(label, daemon("workers", fsync=args.fsync,
                                                     workers=args.workers), body)
        if not args.fsync:  # the default setting, for what durability costs
            contenders[FSYNC_LABEL] = seeded(FSYNC_LABEL, daemon("fsync", fsync=True), body)
        if args.refs:
            if shutil.which("nginx"):
                (data / "nginx").mkdir()
                nginx = Nginx(plant.data / "s3_longterm", data / "nginx")
                stack.callback(nginx.stop)
                contenders["nginx"] = Contender("nginx", nginx)
            contenders.update(start_references(stack, data, body))
        for contender in contenders.values():
            warm_up(contender, body_file)
        for scenario in scenarios(args, body_file, data):
            runs = args.large_runs if scenario.large else args.runs
            results.update(run_scenario(scenario, contenders, runs))
        results.update(run_plantcdn_only(plant, args))
    pairs = {label: (a, b) for label, (a, b) in ratio_rows(args).items()
             if a in results and b in results}
    ratios = {label: paired_ratios(results[a], results[b]) for label, (a, b) in pairs.items()}
    valid_ratios = [label for label, (a, b) in pairs.items()
                    if results[a]["valid"] and results[b]["valid"]]
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "runs": args.runs,
        "large_runs": args.large_runs, "args": {k: str(v) for k, v in vars(args).items()},
        "ratios": ratios, "valid_ratios": valid_ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps({"meta": meta, "results": results},
                                                     indent=2))
    table = markdown(results, meta)
    (args.out / "latest.md").write_text(table)
    print(table)
    return 0 if all(r["valid"] for r in results.values()) else 1


if __name__ == "__main__":
    threading.stack_size(0)
    sys.exit(main())
