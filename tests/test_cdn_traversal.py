"""``/cdn`` serves objects of the long-term bucket and nothing else, whatever the path.

A daemon runs over a data folder seeded with secrets in every place a path
trick could reach: next to the bucket folders, above the data folder, inside
``.plantcdn/`` (metadata, temporary uploads), in the other bucket, and behind
symlinks that lead out of the bucket.  Hundreds of generated paths (dot
segments, percent-encoded and double-encoded dots and slashes, backslashes,
NUL, overlong UTF-8, folders) are sent byte for byte; every answer is either
one of the bucket's objects or a refusal that carries no secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from conftest import LONGTERM, RunningServer, clean_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cdn_support import raw_get

SECRETS = (b"SECRET-OUTSIDE", b"SECRET-PARENT", b"SECRET-INTERNAL", b"SECRET-TMP", b"SECRET-INBOX")
LEGIT = {
    "company_1/plant_1/real.webp": b"LEGIT-PHOTO",
    "company_1/plant_1/index.html": b"LEGIT-INDEX",
    "company_1/plant_1/sub/deep.webp": b"LEGIT-DEEP",
}
#: A stored metadata document would contain this; no response body may.
META_MARKER = b'"etag":'


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("traversal")
    (root / "SECRET-parent.txt").write_bytes(b"SECRET-PARENT")
    data = root / "data"
    data.mkdir()
    (data / "secret.txt").write_bytes(b"SECRET-OUTSIDE")
    running = RunningServer(data, clean_env({"PLANTCDN_FSYNC": "false"}))
    try:
        client = running.client()
        for key, body in LEGIT.items():
            client.put_object(Bucket=LONGTERM, Key=key, Body=body, ContentType="image/webp")  # type: ignore[attr-defined]
        client.put_object(  # type: ignore[attr-defined]
            Bucket="plantdb-inbox", Key="company_1/plant_1/inbox.webp", Body=b"SECRET-INBOX"
        )
        bucket = data / "s3_longterm"
        (bucket / ".plantcdn" / "secret.txt").write_bytes(b"SECRET-INTERNAL")
        (bucket / ".plantcdn" / "tmp" / "upload.part").write_bytes(b"SECRET-TMP")
        plant = bucket / "company_1" / "plant_1"
        os.symlink(data / "secret.txt", plant / "escape.txt")
        os.symlink(root / "SECRET-parent.txt", plant / "parent.txt")
        os.symlink(bucket / ".plantcdn" / "secret.txt", plant / "internal.txt")
        os.symlink(data, bucket / "company_1" / "plant_7")  # a folder link out of the bucket
        os.symlink("real.webp", plant / "alias.webp")  # a link that stays inside: allowed
        # Metadata lives in an xattr where the filesystem has them, else in sidecar
        # documents under .plantcdn/meta: plant one there either way.
        sidecar = bucket / ".plantcdn" / "meta" / "ab" / "planted.1.json"
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_bytes(b'{"etag": "SECRET-META"}')
        yield running
    finally:
        running.stop()


def _assert_safe(status: int, body: bytes, path: bytes) -> None:
    for secret in SECRETS:
        assert secret not in body, (path, status)
    assert META_MARKER not in body, (path, status)
    if status == 200:
        assert body in LEGIT.values(), (path, body[:80])
    else:
        assert status in (400, 403, 404, 405, 414), (path, status)


@pytest.mark.parametrize(
    "path",
    [
        b"/cdn/",
        b"/cdn",
        b"/cdn/company_1/",
        b"/cdn/company_1/plant_1/",
        b"/cdn/company_1/plant_1",
        b"/cdn/company_1/plant_1/sub",
        b"/cdn/company_1/plant_1/sub/",
        b"/cdn/.plantcdn/secret.txt",
        b"/cdn/.plantcdn/tmp/upload.part",
        b"/cdn/.plantcdn/meta/",
        b"/cdn/%2eplantcdn/secret.txt",
        b"/cdn/company_1/plant_1/escape.txt",
        b"/cdn/company_1/plant_1/parent.txt",
        b"/cdn/company_1/plant_1/internal.txt",
        b"/cdn/company_1/plant_7/secret.txt",
        b"/cdn/company_1/plant_7/s3_inbox/company_1/plant_1/inbox.webp",
        b"/cdn/company_1/plant_1/../../../secret.txt",
        b"/cdn/company_1/plant_1/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        b"/cdn/company_1/plant_1/%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
        b"/cdn/company_1/plant_1/%252e%252e/%252e%252e/%252e%252e/secret.txt",
        b"/cdn/company_1/plant_1/..%5c..%5c..%5csecret.txt",
        b"/cdn/company_1/plant_1/..\\..\\..\\secret.txt",
        b"/cdn/company_1/plant_1/real.webp%00.txt",
        b"/cdn/company_1/plant_1/real.webp\x00",
        b"/cdn/company_1/plant_1/%c0%ae%c0%ae/secret.txt",
        b"/cdn/../s3_inbox/company_1/plant_1/inbox.webp",
        b"/cdn/%2e%2e/secret.txt",
        b"/cdn/%2e%2e/%2e%2e/SECRET-parent.txt",
        b"/cdn//company_1/plant_1/real.webp",
        b"/cdn/./company_1/plant_1/real.webp",
        b"/cdn/company_1/./plant_1/real.webp",
        b"/cdn/company_1/plant_1/real.webp/",
        b"/cdn/company_1/plant_1/real.webp/..",
        b"/%63dn/company_1/plant_1/../../../secret.txt",
        b"/plantdb-longterm/.plantcdn/secret.txt",
    ],
)
def test_known_tricks_are_refused(seeded: RunningServer, path: bytes) -> None:
    """Folders, internals, links out, every spelling of ``..``: a refusal without a secret."""
    status, body = raw_get(seeded, path)
    assert status != 200, path
    _assert_safe(status, body, path)


def test_objects_and_inside_links_are_served(seeded: RunningServer) -> None:
    """The control group: real keys (also percent-encoded) and a link inside the bucket."""
    for key, body in LEGIT.items():
        assert raw_get(seeded, f"/cdn/{key}".encode()) == (200, body)
        assert raw_get(seeded, ("/cdn/" + quote(key, safe="")).encode()) == (200, body)
    assert raw_get(seeded, b"/cdn/company_1/plant_1/alias.webp") == (200, b"LEGIT-PHOTO")


def test_head_of_a_folder_is_refused(seeded: RunningServer) -> None:
    status, body = raw_get(seeded, b"/cdn/company_1/plant_1/", method=b"HEAD")
    assert status == 404
    assert body == b""


SEGMENTS = st.sampled_from(
    [
        "..", ".", "", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "%252e%252e", "%25252e", "%2e",
        "%c0%ae%c0%ae", "..;", "...", "~", ".plantcdn", "%2eplantcdn", "meta", "tmp",
        "company_1", "plant_1", "plant_7", "sub", "real.webp", "index.html", "deep.webp",
        "escape.txt", "parent.txt", "internal.txt", "secret.txt", "SECRET-parent.txt",
        "upload.part", "s3_inbox", "s3_longterm", "inbox.webp", "data", "%00", "\x00",
        "real.webp%00", "%ff", "%5c..", "..\\", "%e2%80%a8", "company_01", "plant_-1",
    ]
)  # fmt: skip
SEPARATORS = st.sampled_from(["/", "/", "/", "%2f", "%2F", "\\", "%5c", "%5C", "//", "%252f"])
PREFIXES = st.sampled_from(["/cdn/", "/cdn/", "/cdn", "/cdn//", "/cdn/./", "/%63dn/", "/CDN/"])


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(SEGMENTS, min_size=1, max_size=8))
    text = draw(PREFIXES) + parts[0]
    for part in parts[1:]:
        text += draw(SEPARATORS) + part
    return text.encode("utf-8")


@st.composite
def mutated_keys(draw: st.DrawFn) -> bytes:
    """A real key with a few segments inserted, replaced or re-spelled (often still valid)."""
    parts = draw(st.sampled_from(sorted(LEGIT))).split("/")
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(parts)))
        if draw(st.booleans()) and index < len(parts):
            parts[index] = quote(parts[index], safe="") if draw(st.booleans()) else draw(SEGMENTS)
        else:
            parts.insert(index, draw(SEGMENTS))
    text = "/cdn/" + parts[0]
    for part in parts[1:]:
        text += draw(SEPARATORS) + part
    return text.encode("utf-8")


@settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.one_of(paths(), mutated_keys()))
def test_generated_paths_never_leak(seeded: RunningServer, path: bytes) -> None:
    """Any path: one of the bucket's objects, or a refusal with no secret in it."""
    status, body = raw_get(seeded, path)
    _assert_safe(status, body, path)
