"""``--workers N``: several reactor processes share the listening socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import INBOX, LONGTERM, RunningServer, clean_env, wait_until
from twisted.python import usage

from plantcdn.tap import Options
from plantcdn.workers import parse_workers


def test_workers_option_accepts_numbers_and_auto(tmp_path: Path) -> None:
    options = Options(environ={})
    options.parseOptions(["--data-dir", str(tmp_path), "--workers", "3"])
    assert options["workers"] == 3
    assert parse_workers("auto") == max(1, os.cpu_count() or 1)


@pytest.mark.parametrize("value", ["0", "-1", "many", "65"])
def test_invalid_workers_value_is_a_usage_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(usage.UsageError):
        Options(environ={}).parseOptions(["--data-dir", str(tmp_path), "--workers", value])


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _twistd_with_two_workers(
    tmp_path: Path, logfile: str, log_format: str = "text", **popen: Any
) -> subprocess.Popen:
    """``twistd -n plantcdn --workers 2`` on a free loopback port, data in *tmp_path*."""
    twistd = str(Path(sys.executable).with_name("twistd"))
    return subprocess.Popen(
        [twistd, "-n", "--pidfile=", f"--logfile={logfile}", "plantcdn", "--workers", "2",
         "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", str(tmp_path)],
        cwd=tmp_path,
        env=clean_env({"PLANTCDN_FSYNC": "false", "PLANTCDN_LOG_FORMAT": log_format}),
        **popen,
    )


def test_two_workers_serve_uploads_and_reads_and_stop_together(tmp_path: Path) -> None:
    """Objects written through one process are read through the other; SIGTERM ends both."""
    process = _twistd_with_two_workers(
        tmp_path, "-", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_until(lambda: any("listening on http://" in x for x in lines), 30)
        port = int(
            next(x for x in lines if "listening on http://" in x)
            .split("listening on http://")[1]
            .split()[0]
            .rsplit(":", 1)[1]
        )
        assert wait_until(lambda: len(children_of(process.pid)) == 1, 30)
        assert wait_until(lambda: sum("OpsSite starting" in x for x in lines) >= 2, 30)
        server: Any = RunningServer.__new__(RunningServer)
        server.port, server.access_key, server.secret_key = port, None, None
        from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY

        server.access_key, server.secret_key = DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY
        s3: Any = server.client()

        def roundtrip(i: int) -> bool:
            key = f"company_1/plant_1/w{i}.txt"
            bucket = INBOX if i % 2 else LONGTERM
            s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"body {i}".encode()

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(roundtrip, range(60)))
        worker = children_of(process.pid)[0]
        process.send_signal(signal.SIGTERM)
        process.wait(40)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{worker}").exists():
            time.sleep(0.05)
        assert (
            not Path(f"/proc/{worker}/status").exists()
            or "zombie" in Path(f"/proc/{worker}/status").read_text()
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_workers_access_lines_land_in_the_one_logfile(
    tmp_path: Path, log_format: str
) -> None:
    """Workers send their log lines to the parent, which writes them to ``--logfile``."""
    logfile = tmp_path / "plantcdn.log"
    process = _twistd_with_two_workers(
        tmp_path, str(logfile), log_format,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def log_text() -> str:
            return logfile.read_text() if logfile.exists() else ""

        assert wait_until(lambda: log_text().count("OpsSite starting") >= 2, 30)
        port = int(log_text().split("listening on http://")[1].split()[0].rsplit(":", 1)[1])
        server: Any = RunningServer.__new__(RunningServer)
        from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY

        server.port, server.access_key, server.secret_key = (
            port, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY
        )
        s3: Any = server.client()

        def put(i: int) -> None:
            s3.put_object(Bucket=LONGTERM, Key=f"company_1/plant_1/log{i}.txt", Body=b"x")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(40)))
        assert wait_until(lambda: log_text().count('" PutObject 200 ') == 40, 15), log_text()
        assert "plantcdn.access" in log_text()
        if log_format == "json":  # whole records, none torn or interleaved
            import json

            records = [json.loads(line) for line in log_text().splitlines()]
            puts = [r for r in records if r.get("operation") == "PutObject"]
            assert len(puts) == 40
            assert all(r["status"] == 200 and r["level"] == "info" for r in puts)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.stdout is not None
    assert "PutObject" not in process.stdout.read()


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the parent no chance to stop its workers: they stop themselves."""
    process = _twistd_with_two_workers(tmp_path, str(tmp_path / "log"))
    try:
        assert wait_until(lambda: len(children_of(process.pid)) == 1, 30)
        worker = children_of(process.pid)[0]
        assert wait_until(lambda: (tmp_path / "log").read_text().count("OpsSite starting") >= 2, 30)
    finally:
        process.kill()
        process.wait(10)

    def gone() -> bool:
        status = Path(f"/proc/{worker}/status")
        return not status.exists() or "zombie" in status.read_text()

    assert wait_until(gone, 20)


def test_forwarded_access_event_is_written_as_the_parents_own(monkeypatch) -> None:
    """Under an operator's observer, a worker's access event, sent as Twisted's event
    JSON, becomes the same text line (and JSON fields) in the parent's log as an
    access event of the parent's own."""
    import io
    import json

    from twisted.logger import Logger, LogPublisher

    from plantcdn import workers
    from plantcdn.accesslog import ClassicTextObserver, JsonLinesObserver, log_access

    fields = dict(client="127.0.0.1", method="GET", path="/cdn/company_1/plant_2/a.webp",
                  operation="CdnGet", status=200, bytes_in=0, bytes_out=65536,
                  duration_ms=0.42, request_id="-", error_code=None)
    emitted: list[dict[str, Any]] = []
    pipe = io.StringIO()
    publisher = LogPublisher(emitted.append, workers._observer_for_parent(None, 2, pipe))
    log_access(**fields, logger=Logger(namespace="plantcdn.access", observer=publisher))
    original = emitted[0]
    assert pipe.getvalue().startswith("\x1e{")

    published: list[dict[str, Any]] = []
    monkeypatch.setattr(workers, "globalLogPublisher", published.append)
    worker = workers._WorkerProcess(pool=None, index=1)  # type: ignore[arg-type]
    worker.outReceived(pipe.getvalue().encode())
    forwarded = published[0]
    assert forwarded["plantcdn_worker"] == 2

    def text(event: dict[str, Any]) -> str:
        out = io.StringIO()
        ClassicTextObserver(out)(event)
        return out.getvalue()

    def record(event: dict[str, Any]) -> dict[str, Any]:
        out = io.StringIO()
        JsonLinesObserver(out)(event)
        return json.loads(out.getvalue())

    assert text(forwarded) == text(original)
    assert {k: v for k, v in record(forwarded).items() if k != "worker"} == record(original)
