"""archived_processors: kept out of plantcdn, and a working demonstration of the pipeline.

The end-to-end test is the whole pipeline against the real daemon: a browser-style
presigned POST upload to the inbox, the reference worker run as its own process
(SigV4-signed GET, Pillow, SigV4-signed PUTs with treq), then ``/cdn`` serving
each variant of the contract.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import INBOX, LONGTERM, RunningServer, clean_env

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "archived_processors" / "worker.py"

START_APP_AND_LIST_MODULES = r"""
import json, sys, urllib.request
from twisted.internet import reactor, threads
from plantcdn.tap import Options, makeService

options = Options(environ={"PLANTCDN_FSYNC": "false"})
options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--data-dir", sys.argv[1]])
service = makeService(options)
service.privilegedStartService()
service.startService()
result = {}

def probe():
    listener = next(s for s in service if getattr(s, "port", None) is not None)
    port = listener.port.getHost().port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_plantcdn/health", timeout=10) as r:
        result["health"] = r.status

def done(_):
    result["modules"] = sorted(m for m in sys.modules
                               if m.split(".")[0] in ("PIL", "archived_processors"))
    reactor.stop()

def go():
    threads.deferToThread(probe).addBoth(done)

reactor.callLater(0.2, go)
reactor.callLater(30, reactor.stop)
reactor.run()
print(json.dumps(result))
"""


def test_running_plantcdn_never_imports_pillow_or_the_archive(tmp_path: Path) -> None:
    """A process that starts plantcdn and serves a request has neither PIL nor
    archived_processors in sys.modules."""
    result = subprocess.run(
        [sys.executable, "-c", START_APP_AND_LIST_MODULES, str(tmp_path)],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"health": 200, "modules": []}


def test_no_plantcdn_module_mentions_pillow_or_the_archive() -> None:
    """No source file of the package imports PIL or archived_processors."""
    for path in (ROOT / "plantcdn").rglob("*.py"):
        text = path.read_text()
        assert "import PIL" not in text and "from PIL" not in text, path
        assert "archived_processors" not in text, path


def _jpeg(width: int, height: int) -> bytes:
    image = PIL.new("RGB", (width, height), (30, 140, 60))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _presigned_post_upload(server: RunningServer, key: str, body: bytes) -> int:
    """What the browser does with Django's presigned POST: a multipart form to the inbox."""
    s3: Any = server.client(signature_version="s3v4")
    post = s3.generate_presigned_post(INBOX, key, Fields={"Content-Type": "image/jpeg"},
                                      Conditions=[{"Content-Type": "image/jpeg"}], ExpiresIn=300)
    boundary = "----worker" + uuid.uuid4().hex
    parts = []
    for name, value in post["fields"].items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                 + body + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        post["url"], data=b"".join(parts), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_worker_pipeline_end_to_end(server: RunningServer, tenant: str) -> None:
    """POST upload -> worker -> /cdn serves thumb, medium and large as WebP within bounds."""
    raw_key = f"{tenant}/{uuid.uuid4().hex}.jpg"
    assert _presigned_post_upload(server, raw_key, _jpeg(1600, 1200)) == 204

    env = clean_env({"AWS_S3_ACCESS_KEY_ID": server.access_key,
                     "AWS_S3_SECRET_ACCESS_KEY": server.secret_key})
    result = subprocess.run(
        [sys.executable, str(WORKER), "--endpoint", server.url, raw_key],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["source"] == raw_key
    bounds = {"thumb": 256, "medium": 1024, "large": 2048}
    assert [v["variant"] for v in report["variants"]] == list(bounds)

    image_id = raw_key.rsplit("/", 1)[1].split(".")[0]
    for variant in report["variants"]:
        key = f"{tenant}/{image_id}/{variant['variant']}.webp"
        assert variant["key"] == key
        with urllib.request.urlopen(f"{server.url}/cdn/{key}", timeout=10) as response:
            assert response.headers["Content-Type"] == "image/webp"
            assert "immutable" in response.headers["Cache-Control"]
            served = response.read()
        with PIL.open(io.BytesIO(served)) as image:
            assert image.format == "WEBP"
            assert max(image.size) == min(bounds[variant["variant"]], 1600)
            assert image.size == (variant["width"], variant["height"])
        assert (server.bucket_dir(LONGTERM) / key).read_bytes() == served
    assert (server.bucket_dir(INBOX) / raw_key).exists()  # the raw upload stays


def test_worker_refuses_a_file_that_is_not_an_image(server: RunningServer, tenant: str) -> None:
    """A raw upload Pillow cannot read: non-zero exit, no variant written."""
    raw_key = f"{tenant}/{uuid.uuid4().hex}.png"
    s3: Any = server.client()
    s3.put_object(Bucket=INBOX, Key=raw_key, Body=b"not an image at all")
    env = clean_env({"AWS_S3_ACCESS_KEY_ID": server.access_key,
                     "AWS_S3_SECRET_ACCESS_KEY": server.secret_key})
    result = subprocess.run(
        [sys.executable, str(WORKER), "--endpoint", server.url, raw_key],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "not an image" in result.stderr
    image_id = raw_key.rsplit("/", 1)[1].split(".")[0]
    assert not (server.bucket_dir(LONGTERM) / tenant / image_id).exists()
