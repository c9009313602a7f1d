"""Fixtures that start the real daemon (``twistd -n plantcdn``) on a loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY

REGION = "us-east-1"
INBOX = "plantdb-inbox"
LONGTERM = "plantdb-longterm"


class RunningServer:
    """One ``twistd -n plantcdn`` child process and what a test needs to talk to it."""

    def __init__(self, data_dir: Path, env: Mapping[str, str]) -> None:
        self.data_dir = data_dir
        self.env = dict(env)
        self.access_key = env.get("AWS_S3_ACCESS_KEY_ID") or DEV_ACCESS_KEY_ID
        self.secret_key = env.get("AWS_S3_SECRET_ACCESS_KEY") or DEV_SECRET_ACCESS_KEY
        self.lines: list[str] = []
        twistd = str(Path(sys.executable).with_name("twistd"))
        self.process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--logfile=-", "plantcdn",
             "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", str(data_dir)],
            cwd=data_dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30) or self.port == 0:
            self.stop()
            raise RuntimeError("plantcdn did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "plantcdn listening on http://" in line and not self._ready.is_set():
                self.port = int(line.split("plantcdn listening on http://")[1].split()[0]
                                .rsplit(":", 1)[1])
                self._ready.set()
        self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        return "".join(self.lines)

    def client(self, **config: object) -> object:
        s3_config = {"addressing_style": config.pop("addressing_style", "path")}
        return boto3.client(
            "s3",
            endpoint_url=config.pop("endpoint_url", self.url),
            region_name=REGION,
            aws_access_key_id=config.pop("access_key", self.access_key),
            aws_secret_access_key=config.pop("secret_key", self.secret_key),
            config=BotoConfig(
                s3=s3_config,
                request_checksum_calculation=config.pop(
                    "request_checksum_calculation", "when_required"
                ),
                retries={"max_attempts": 1, "mode": "standard"},
                **config,
            ),
        )

    def bucket_dir(self, bucket: str) -> Path:
        return self.data_dir / ("s3_inbox" if bucket == INBOX else "s3_longterm")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any AWS or plantcdn settings."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("AWS_", "S3_", "PLANTCDN_")) and k not in ("PORT", "BASE_URL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shared daemon with default settings (development key pair, fsync off for speed)."""
    data = tmp_path_factory.mktemp("plantcdn-data")
    running = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    yield running
    running.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start a daemon with extra environment settings, stopped after the test."""
    started: list[RunningServer] = []

    def start(data_dir: Path | None = None, **env: str) -> RunningServer:
        """*data_dir*: reuse a stopped daemon's folders (restart tests)."""
        data = data_dir or tmp_path / f"data{len(started)}"
        data.mkdir(exist_ok=True)
        running = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false", **env}))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


_counter = iter(range(1, 10**9))


@pytest.fixture
def tenant() -> str:
    """A key prefix no other test uses: company_<n>/plant_<pid>/."""
    return f"company_{next(_counter)}/plant_{os.getpid()}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every visible file below *folder* (not plantcdn's own), with its bytes.

    ``.plantcdn`` is never entered: its reaper may be removing folders there
    meanwhile, which would make a recursive glob fail half-way.
    """
    result = {}
    for root, dirs, files in os.walk(folder):
        if Path(root) == folder:
            dirs[:] = [d for d in dirs if d != ".plantcdn"]
        for name in files:
            path = Path(root) / name
            if path.is_file():
                result[path.relative_to(folder).as_posix()] = path.read_bytes()
    return dict(sorted(result.items()))


def temp_files(folder: Path) -> list[Path]:
    tmp = folder / ".plantcdn" / "tmp"
    return list(tmp.iterdir()) if tmp.is_dir() else []


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


__all__ = ["RunningServer", "clean_env", "shutil", "snapshot", "temp_files", "wait_until"]
