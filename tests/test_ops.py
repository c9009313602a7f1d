"""Health, metrics, access log and graceful shutdown: ``plantcdn.ops`` and ``plantcdn.accesslog``.

The real daemon is driven with boto3 and raw sockets; metrics are parsed with
``prometheus_client``'s own parser.  Pure pieces (bounded scans, option
resolution, log sanitising) are tested without a reactor.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import INBOX, LONGTERM, REGION, RunningServer, temp_files, wait_until
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python import usage

from plantcdn.accesslog import JsonLinesObserver, safe_path
from plantcdn.config import Config
from plantcdn.ops import Ops, default_operation, resolve_ops_options, scan_bucket
from plantcdn.storage import Storage

# -- helpers ----------------------------------------------------------------------


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/_plantcdn/metrics``, keyed by name and sorted labels."""
    status, body, headers = get(server.url + "/_plantcdn/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def signed_put(server: RunningServer, key: str, body: bytes) -> bytes:
    """The head of a botocore-signed PutObject, ready for a raw socket."""
    host = f"127.0.0.1:{server.port}"
    request = AWSRequest(method="PUT", url=f"http://{host}/{INBOX}/{key}", data=body,
                         headers={"Content-Length": str(len(body))})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", REGION).add_auth(request)
    lines = [f"PUT /{INBOX}/{key} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()
              if name.lower() not in ("host", "connection")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- health -----------------------------------------------------------------------


def test_health_reports_version_uptime_writable_storage_and_free_disk(
    server: RunningServer,
) -> None:
    """GET /_plantcdn/health is 200 JSON with version, uptime, writable storage, free disk."""
    status, body, headers = get(server.url + "/_plantcdn/health")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["status"] == "ok"
    assert document["version"]
    assert document["uptime_seconds"] >= 0
    assert document["storage_writable"] is True
    assert document["free_bytes"] > 0
    assert set(document["buckets"]) == {INBOX, LONGTERM}
    assert temp_files(server.bucket_dir(INBOX)) == []  # the write probe leaves nothing


def test_reserved_prefix_is_not_a_bucket(server: RunningServer) -> None:
    """Unknown paths below /_plantcdn/ are 404 and writes there are refused, never S3 errors."""
    assert get(server.url + "/_plantcdn/nothing-here")[0] == 404
    request = urllib.request.Request(server.url + "/_plantcdn/health", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code in (405, 501)  # Twisted: 501 for methods it doesn't know
    assert b"<Code>" not in caught.value.read()


def test_health_is_503_when_storage_is_not_writable(tmp_path: Path) -> None:
    """A bucket folder that cannot be written makes health 503 "unhealthy"."""
    config = Config(data_dir=tmp_path)
    storage = Storage(config)
    storage.prepare()
    ops = Ops(storage, Clock(), with_process_metrics=False)
    assert ops.health()[0] == 200
    tmp_dir = storage.buckets[INBOX].tmp_dir
    tmp_dir.rmdir()
    tmp_dir.write_bytes(b"")  # a file where the folder should be: nothing can be created there
    status, document = ops.health()
    assert status == 503
    assert document["status"] == "unhealthy"
    assert document["buckets"][INBOX]["writable"] is False
    assert document["buckets"][LONGTERM]["writable"] is True


# -- metrics ----------------------------------------------------------------------


def test_metrics_count_real_traffic(server: RunningServer, tenant: str) -> None:
    """After uploads, a read, a bad signature and a missing key, the scrape shows them all."""
    before = scrape(server)
    s3: Any = server.client()
    body = b"x" * 1000
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/a.bin", Body=body)
    s3.put_object(Bucket=LONGTERM, Key=f"{tenant}/b.bin", Body=body * 2)
    assert s3.get_object(Bucket=INBOX, Key=f"{tenant}/a.bin")["Body"].read() == body
    with pytest.raises(Exception, match="NoSuchKey"):
        s3.get_object(Bucket=INBOX, Key=f"{tenant}/missing")
    bad: Any = server.client(secret_key="wrong-secret")
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        bad.put_object(Bucket=INBOX, Key=f"{tenant}/c.bin", Body=b"nope")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert wait_until(lambda: True)
    after = scrape(server)
    assert delta("plantcdn_requests_total", operation="PutObject", status="200") == 2
    assert delta("plantcdn_requests_total", operation="PutObject", status="403") == 1
    assert delta("plantcdn_requests_total", operation="GetObject", status="200") == 1
    assert delta("plantcdn_requests_total", operation="GetObject", status="404") == 1
    assert delta("plantcdn_s3_errors_total", code="NoSuchKey") == 1
    assert delta("plantcdn_s3_errors_total", code="SignatureDoesNotMatch") == 1
    assert delta("plantcdn_signatures_rejected_total", code="SignatureDoesNotMatch") == 1
    assert delta("plantcdn_received_bytes_total", operation="PutObject") >= 3000
    assert delta("plantcdn_sent_bytes_total", operation="GetObject") >= 1000
    assert delta("plantcdn_request_duration_seconds_count", operation="GetObject") == 2
    assert delta("plantcdn_upload_duration_seconds_count", operation="PutObject") == 3
    assert value(after, "plantcdn_uploads_in_flight") == 0
    # The scrape itself is in flight while it renders.
    assert value(after, "plantcdn_requests_in_flight") >= 1
    assert value(after, "plantcdn_info", version="0.1.0") == 1

    def stored() -> bool:
        now = scrape(server)
        return (
            value(now, "plantcdn_bucket_objects", bucket=INBOX) >= 1
            and value(now, "plantcdn_bucket_bytes", bucket=LONGTERM) >= 2000
        )

    assert wait_until(stored, timeout=10)
    assert value(after, "plantcdn_storage_free_bytes", bucket=INBOX) > 0


def test_bucket_counts_are_exact_on_a_fresh_server(start_server: Any) -> None:
    """Objects and bytes per bucket equal what was uploaded; plantcdn's own files don't count."""
    server = start_server()
    s3: Any = server.client()
    for n in range(3):
        s3.put_object(Bucket=INBOX, Key=f"company_1/plant_1/{n}.bin", Body=b"y" * 10)
    samples = scrape(server)
    assert value(samples, "plantcdn_bucket_objects", bucket=INBOX) == 3
    assert value(samples, "plantcdn_bucket_bytes", bucket=INBOX) == 30
    assert value(samples, "plantcdn_bucket_objects", bucket=LONGTERM) == 0
    assert value(samples, "plantcdn_bucket_scan_truncated", bucket=INBOX) == 0


def test_scan_stops_at_its_limit(tmp_path: Path) -> None:
    """A bucket with more entries than the limit gives a lower bound, marked truncated."""
    for n in range(20):
        (tmp_path / f"f{n}").write_bytes(b"z")
    (tmp_path / ".plantcdn").mkdir()
    (tmp_path / ".plantcdn" / "hidden").write_bytes(b"zzzz")
    full = scan_bucket(tmp_path, limit=1000)
    assert (full.objects, full.bytes, full.truncated) == (20, 20, False)
    partial = scan_bucket(tmp_path, limit=5)
    assert partial.truncated and partial.objects <= 5


def test_unannotated_requests_get_a_bounded_operation_label() -> None:
    """CDN, ops and unparseable requests are labelled from a fixed set."""
    assert default_operation(b"/cdn/company_1/plant_1/x.webp") == "CdnGet"
    assert default_operation(b"/_plantcdn/metrics") == "PlantcdnOps"
    assert default_operation(b"/whatever") == "Unknown"


# -- access log -------------------------------------------------------------------


def test_access_log_has_one_line_per_request_and_no_signature(server: RunningServer,
                                                              tenant: str) -> None:
    """A presigned GET is logged once, with operation and request id, without its query."""
    s3: Any = server.client(signature_version="s3v4")
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/logged.txt", Body=b"hello")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": f"{tenant}/logged.txt"}, ExpiresIn=60
    )
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    status, _, headers = get(url)
    assert status == 200
    request_id = headers["x-amz-request-id"]
    assert wait_until(lambda: request_id in server.log_text)
    lines = [line for line in server.log_text.splitlines() if request_id in line]
    assert len(lines) == 1
    assert "plantcdn.access" in lines[0]
    assert f'"GET /{INBOX}/{tenant}/logged.txt" GetObject 200' in lines[0]
    assert "out=5" in lines[0]
    assert signature not in server.log_text
    assert "X-Amz-Credential" not in server.log_text
    assert server.secret_key not in server.log_text


def test_json_log_format_writes_one_json_object_per_line(start_server: Any) -> None:
    """PLANTCDN_LOG_FORMAT=json: every line is JSON; access lines carry the access fields."""
    server = start_server(PLANTCDN_LOG_FORMAT="json")
    status, _, _ = get(server.url + "/_plantcdn/health")
    assert status == 200
    assert wait_until(lambda: "/_plantcdn/health" in server.log_text)
    records = [json.loads(line) for line in server.log_text.splitlines() if line.strip()]
    access = [r for r in records if r["namespace"] == "plantcdn.access"]
    assert access[-1]["path"] == "/_plantcdn/health"
    assert access[-1]["status"] == 200
    assert access[-1]["operation"] == "PlantcdnOps"
    assert {"time", "level", "message"} <= set(access[-1])


def test_json_observer_writes_only_message_and_access_fields() -> None:
    """A field passed to a log call but not in its message never reaches the JSON line."""
    out = io.StringIO()
    JsonLinesObserver(out)({
        "log_format": "refused {code}", "code": "AccessDenied", "authorization": "AWS4 secret",
        "log_level": LogLevel.info, "log_namespace": "x", "log_time": 0.0,
    })
    record = json.loads(out.getvalue())
    assert record["message"] == "refused AccessDenied"
    assert "secret" not in out.getvalue()


def test_safe_path_drops_query_and_escapes_control_characters() -> None:
    """Logged paths never carry the query string (a presigned signature) nor raw controls."""
    assert safe_path(b"/b/k?X-Amz-Signature=abc") == "/b/k"
    assert safe_path(b"/b/\x1b[31mk") == "/b/\\x1b[31mk"
    assert len(safe_path(b"/" + b"a" * 5000)) <= 1030


# -- options ----------------------------------------------------------------------


class _Parent(dict):  # type: ignore[type-arg]
    pass


class _Options(usage.Options):
    optParameters = [["shutdown-grace", None, None, ""], ["log-format", None, None, ""]]


def test_options_fall_back_to_the_environment_and_validate() -> None:
    """--shutdown-grace and --log-format come from the environment when not given."""
    options = _Options()
    options.parseOptions([])
    resolve_ops_options(options, {"PLANTCDN_SHUTDOWN_GRACE": "2.5", "PLANTCDN_LOG_FORMAT": "JSON"})
    assert options["shutdown-grace"] == 2.5
    assert options["log-format"] == "json"
    for args in (["--shutdown-grace", "soon"], ["--log-format", "xml"]):
        bad = _Options()
        bad.parseOptions(args)
        with pytest.raises(usage.UsageError):
            resolve_ops_options(bad, {})


def test_json_format_installs_twistd_logger_once() -> None:
    """--log-format json sets twistd's --logger, unless the operator chose one."""
    options = _Options()
    options.parseOptions(["--log-format", "json"])
    options.parent = _Parent(logfile="-", nodaemon=True)  # type: ignore[attr-defined]
    resolve_ops_options(options, {})
    assert options.parent["logger"] == "plantcdn.accesslog.json_log_observer"  # type: ignore[attr-defined]
    chosen = object()
    options.parent = _Parent(logger=chosen)  # type: ignore[attr-defined]
    resolve_ops_options(options, {})
    assert options.parent["logger"] is chosen  # type: ignore[attr-defined]


# -- graceful shutdown -------------------------------------------------------------

#: twistd re-raises the signal that stopped it once shutdown is complete, so a clean
#: stop on SIGTERM ends with -SIGTERM (systemd and Docker count that as clean).
CLEAN_EXIT = (0, -signal.SIGTERM)


def test_sigterm_lets_an_upload_in_flight_finish(start_server: Any) -> None:
    """SIGTERM mid-upload: new connections are refused, the upload completes and is stored."""
    server = start_server(PLANTCDN_SHUTDOWN_GRACE="20")
    body = os.urandom(200_000)
    key = "company_7/plant_7/in-flight.bin"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    try:
        sock.sendall(signed_put(server, key, body) + body[:100_000])
        assert wait_until(lambda: _uploads_in_flight(server) == 1, timeout=10)
        server.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: not _accepts(server.port), timeout=10)
        assert server.process.poll() is None  # still draining
        sock.sendall(body[100_000:])
        response = _read_all(sock)
    finally:
        sock.close()
    assert response.startswith(b"HTTP/1.1 200"), server.log_text
    assert server.process.wait(15) in CLEAN_EXIT
    assert (server.bucket_dir(INBOX) / key).read_bytes() == body
    assert "waiting up to 20.0s for 1 request(s) in flight" in server.log_text


def test_sigterm_cuts_off_an_upload_that_outlasts_the_grace(start_server: Any) -> None:
    """An upload still incomplete when the grace runs out leaves no object and no temp file."""
    server = start_server(PLANTCDN_SHUTDOWN_GRACE="1")
    body = os.urandom(100_000)
    key = "company_7/plant_7/cut-off.bin"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    try:
        sock.sendall(signed_put(server, key, body) + body[:50_000])
        assert wait_until(lambda: _uploads_in_flight(server) == 1, timeout=10)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) in CLEAN_EXIT
        assert time.monotonic() - started < 10
    finally:
        sock.close()
    inbox = server.bucket_dir(INBOX)
    assert not (inbox / key).exists()
    assert temp_files(inbox) == []
    assert "cutting off 1 request(s)" in server.log_text


def _uploads_in_flight(server: RunningServer) -> float:
    return value(scrape(server), "plantcdn_uploads_in_flight")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
