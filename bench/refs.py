"""Reference S3 servers measured in the same run: moto (PyPI) and s3rver (npm).

``prepare()`` installs them once into ``bench/.refs`` (git-ignored): moto in its
own virtualenv (it pins werkzeug/flask versions of its own), s3rver with npm.
Each ``start_*`` returns a :class:`Reference` with the URL and the key pair to
sign with, and a ``stop`` that ends the process it started, by PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REFS = Path(__file__).resolve().parent / ".refs"


@dataclass
class Reference:
    name: str
    url: str
    access_key: str
    secret_key: str
    pid: int
    stop: Callable[[], None]


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return  # answering at all is enough
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def prepare() -> dict[str, bool]:
    """Install the references if missing; say which are available."""
    REFS.mkdir(exist_ok=True)
    moto = REFS / "moto-venv" / "bin" / "moto_server"
    if not moto.exists():
        subprocess.run(["python3", "-m", "venv", str(REFS / "moto-venv")], check=False)
        subprocess.run([str(REFS / "moto-venv" / "bin" / "pip"), "install", "-q",
                        "moto[server]"], check=False)
    s3rver = REFS / "node_modules" / ".bin" / "s3rver"
    if not s3rver.exists() and shutil.which("npm"):
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "s3rver"],
                       cwd=REFS, check=False)
    return {"moto": moto.exists(), "s3rver": s3rver.exists()}


def _stopper(process: subprocess.Popen[bytes]) -> Callable[[], None]:
    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    return stop


def start_moto(buckets: list[str]) -> Reference:
    port = _free_port()
    process = subprocess.Popen(
        [str(REFS / "moto-venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(url)
    ref = Reference("moto", url, "testing", "testing", process.pid, _stopper(process))
    _create_buckets(ref, buckets)
    return ref


def start_s3rver(buckets: list[str], folder: Path) -> Reference:
    port = _free_port()
    args = [str(REFS / "node_modules" / ".bin" / "s3rver"), "--directory", str(folder),
            "--address", "127.0.0.1", "--port", str(port), "--silent"]
    for bucket in buckets:
        args += ["--configure-bucket", bucket]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url)
    return Reference("s3rver", url, "S3RVER", "S3RVER", process.pid, _stopper(process))


def _create_buckets(ref: Reference, buckets: list[str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=ref.url, region_name="us-east-1",
                      aws_access_key_id=ref.access_key, aws_secret_access_key=ref.secret_key)
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
