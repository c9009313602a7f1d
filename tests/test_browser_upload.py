"""A real browser posts a photo into the inbox from another origin, as Plant-DB's page does.

Headless Chromium (Debian's ``chromium`` package) opens a page served by a tiny
HTTP server on a second loopback port -- a different origin from plantcdn.
The page fetches presigned POST fields from its own server (boto3's
``generate_presigned_post``, as the Django view does), builds a ``FormData``
with a file, and posts it straight to plantcdn.  Because the page may only
read the answer if plantcdn's CORS headers allow it, the page reporting the
201 XML and the exposed ``ETag`` proves the bucket's CORS rules work in a
browser.  A second upload sends a custom header, which makes Chromium send a
preflight first; a third goes to a bucket without CORS rules and must be
blocked by the browser.

The page reports what it saw by posting JSON back to its own server; the test
waits for that (bounded), then ends the Chromium process group it started.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from conftest import INBOX, LONGTERM, REGION, RunningServer, snapshot

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60.0
SIZE = 200_000  # bytes of the file the page builds: i % 251 for i in range(SIZE)
EXPECTED = bytes(i % 251 for i in range(SIZE))

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium "
    "chromium-driver)",
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>plantcdn upload</title></head>
<body><pre id="result">running</pre>
<script>
const SIZE = %(size)d;
function photo() {
  const bytes = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) bytes[i] = i %% 251;
  return new Blob([bytes], {type: "image/png"});
}
async function upload(which, extraHeaders) {
  const presigned = await (await fetch("/presign?bucket=" + which)).json();
  const form = new FormData();
  for (const [name, value] of Object.entries(presigned.fields)) form.append(name, value);
  form.append("file", photo(), "leaf.png");
  const response = await fetch(presigned.url, {method: "POST", body: form, headers: extraHeaders});
  const text = await response.text();
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const pick = (tag) => {
    const el = doc.getElementsByTagName(tag)[0];
    return el ? el.textContent : null;
  };
  return {status: response.status, etag: response.headers.get("ETag"),
          key: pick("Key"), bucket: pick("Bucket"), location: pick("Location"),
          xmlETag: pick("ETag"), root: doc.documentElement ? doc.documentElement.nodeName : null};
}
(async () => {
  const out = {origin: location.origin};
  try {
    out.simple = await upload("inbox", {});
    out.preflighted = await upload("inbox", {"X-Plantdb-Upload": "1"});
    out.blocked = await upload("longterm", {"X-Plantdb-Upload": "1"}).then(
      (r) => ({readable: true, response: r}), (e) => ({readable: false, error: String(e)}));
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById("result").textContent = JSON.stringify(out);
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>
"""


class PageSite:
    """The other origin: serves the page, presigned fields, and receives the page's report."""

    def __init__(self, plantcdn: RunningServer, tenant: str) -> None:
        self.plantcdn = plantcdn
        self.tenant = tenant
        self.result: dict[str, Any] | None = None
        self.done = threading.Event()
        self.seen: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                site.seen.append(format % args)

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/":
                    self._send(200, "text/html; charset=utf-8", (PAGE % {"size": SIZE}).encode())
                elif self.path.startswith("/presign?bucket="):
                    which = self.path.rsplit("=", 1)[1]
                    fields = site.presign(INBOX if which == "inbox" else LONGTERM)
                    self._send(200, "application/json", json.dumps(fields).encode())
                else:
                    self._send(404, "text/plain", b"not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if self.path == "/result" and 0 < length < 1_000_000:
                    site.result = json.loads(self.rfile.read(length))
                    self._send(204, "text/plain", b"")
                    site.done.set()
                else:
                    self._send(404, "text/plain", b"not found")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.uploads = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def presign(self, bucket: str) -> dict[str, Any]:
        """What the Django view returns: boto3's presigned POST for a new key."""
        self.uploads += 1
        client: Any = boto3.client(
            "s3",
            endpoint_url=self.plantcdn.url,
            region_name=REGION,
            aws_access_key_id=self.plantcdn.access_key,
            aws_secret_access_key=self.plantcdn.secret_key,
            config=BotoConfig(signature_version="s3v4"),
        )
        prefix = f"{self.tenant}/upload{self.uploads}/"
        return client.generate_presigned_post(
            bucket,
            prefix + "${filename}",
            Fields={"success_action_status": "201", "Content-Type": "image/png"},
            Conditions=[
                {"success_action_status": "201"},
                ["starts-with", "$key", prefix],
                ["starts-with", "$Content-Type", "image/"],
                ["content-length-range", 1, 10 * 1024 * 1024],
            ],
            ExpiresIn=300,
        )

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start headless Chromium on a URL; its whole process group is ended after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str) -> subprocess.Popen[bytes]:
        profile = tmp_path / "chromium-profile"
        profile.mkdir(exist_ok=True)
        process = subprocess.Popen(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-proxy-server",
                f"--user-data-dir={profile}", url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "chromium.log").open("wb"),
            start_new_session=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture
def cors_file(tmp_path: Path) -> Path:
    """Inbox rules allowing any loopback page (one wildcard: the port) to POST and read ETag."""
    path = tmp_path / "cors.json"
    rules = {
        INBOX: {
            "CORSRules": [
                {
                    "AllowedOrigins": ["http://127.0.0.1:*"],
                    "AllowedMethods": ["POST"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 60,
                }
            ]
        }
    }
    path.write_text(json.dumps(rules))
    return path


def test_browser_posts_a_file_across_origins(
    start_server: Callable[..., RunningServer],
    chromium: Callable[[str], subprocess.Popen[bytes]],
    cors_file: Path,
    tenant: str,
    tmp_path: Path,
) -> None:
    """Chromium uploads with FormData from another origin, reads the 201 XML and the ETag."""
    server = start_server(PLANTCDN_CORS_CONFIG=str(cors_file))
    longterm_before = snapshot(server.bucket_dir(LONGTERM))
    site = PageSite(server, tenant)
    try:
        browser = chromium(site.url)
        finished = site.done.wait(TIMEOUT)
        if not finished:
            log = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]
            pytest.fail(
                f"the page did not report within {TIMEOUT}s (chromium exit: {browser.poll()}); "
                f"page server saw {site.seen}; chromium log:\n{log}"
            )
    finally:
        site.close()
    result = site.result
    assert result is not None
    assert "error" not in result, result
    etag = '"' + hashlib.md5(EXPECTED).hexdigest() + '"'
    for name, number in (("simple", 1), ("preflighted", 2)):
        upload = result[name]
        key = f"{tenant}/upload{number}/leaf.png"
        assert upload["status"] == 201, result
        assert upload["root"] == "PostResponse"
        assert (upload["bucket"], upload["key"], upload["xmlETag"]) == (INBOX, key, etag)
        assert upload["location"] == f"http://localhost:8001/{INBOX}/{key}"
        assert upload["etag"] == etag  # readable only because the rule exposes it
        assert (server.bucket_dir(INBOX) / key).read_bytes() == EXPECTED
        head: Any = server.client().head_object(Bucket=INBOX, Key=key)  # type: ignore[attr-defined]
        assert head["ContentType"] == "image/png"
    # The long-term bucket has no CORS rules: the preflight is refused and the
    # browser never sends the upload.
    assert result["blocked"]["readable"] is False, result
    assert "Failed to fetch" in result["blocked"]["error"]
    assert snapshot(server.bucket_dir(LONGTERM)) == longterm_before
    assert "Preflight 200" in server.log_text
    assert "Preflight 403" in server.log_text
