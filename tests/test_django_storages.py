"""django-storages' ``S3Storage`` end to end against the real daemon, configured as in production.

Plant-DB's Django app talks to S3 only through ``STORAGES["default"]``; the
settings below are the production ones with the endpoint pointed at plantcdn.
No database is needed.  ``save()`` above 8 MB goes through boto3's multipart
upload (django-storages calls ``upload_fileobj``).
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import INBOX, LONGTERM, REGION, RunningServer

django = pytest.importorskip("django")
pytest.importorskip("storages")

from django.conf import settings  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.test import override_settings  # noqa: E402

MiB = 1024 * 1024


def big_body(size: int) -> bytes:
    chunk = hashlib.sha256(b"django").digest() * 2048
    return (chunk * (size // len(chunk) + 1))[:size]


@pytest.fixture(scope="module")
def storages(server: RunningServer) -> Iterator[Any]:
    """``django.core.files.storage.storages`` with the production-shaped S3 settings."""
    common = {
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "endpoint_url": server.url,
        "region_name": REGION,
        "addressing_style": "path",
        "signature_version": "s3v4",
    }
    storages_setting = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**common, "bucket_name": INBOX},
        },
        "longterm": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **common,
                "bucket_name": LONGTERM,
                "querystring_auth": False,
                # CloudFront in production; plantcdn's /cdn read path here.
                "custom_domain": f"127.0.0.1:{server.port}/cdn",
                "url_protocol": "http:",
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    if not settings.configured:
        settings.configure(USE_TZ=True)
        django.setup()
    # Other test modules may have configured Django first: override, as Django's
    # own tests do (the setting_changed signal drops cached storage backends).
    with override_settings(STORAGES=storages_setting):
        from django.core.files.storage import storages as configured

        yield configured


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - test URL
        return response.status, response.read()


def test_small_save_exists_size_open_url(storages: Any, tenant: str) -> None:
    """save() of a small file, then exists(), size(), open().read() and a presigned url()."""
    storage = storages["default"]
    name = storage.save(f"{tenant}/docs/note.txt", ContentFile(b"hello plant"))
    assert name == f"{tenant}/docs/note.txt"
    assert storage.exists(name)
    assert not storage.exists(f"{tenant}/docs/missing.txt")
    assert storage.size(name) == len(b"hello plant")
    with storage.open(name) as handle:
        assert handle.read() == b"hello plant"
    status, body = fetch(storage.url(name))
    assert (status, body) == (200, b"hello plant")


def test_large_save_is_multipart(storages: Any, server: RunningServer, tenant: str) -> None:
    """save() above 8 MB uploads in parts: the stored ETag has the ``-<n>`` form."""
    storage = storages["default"]
    body = big_body(12 * MiB)
    name = storage.save(f"{tenant}/photos/phone.jpg", ContentFile(body))
    assert (server.bucket_dir(INBOX) / name).read_bytes() == body
    assert storage.size(name) == len(body)
    etag = storage.bucket.Object(name).e_tag
    assert etag.endswith('-2"'), etag
    with storage.open(name) as handle:
        assert handle.read() == body


def test_custom_domain_url_serves_from_cdn(storages: Any, tenant: str) -> None:
    """With AWS_S3_CUSTOM_DOMAIN at /cdn, url() is a plain CDN URL that serves the object."""
    storage = storages["longterm"]
    name = storage.save(f"{tenant}/public/leaf.webp", ContentFile(b"leaf bytes"))
    url = storage.url(name)
    assert "/cdn/" in url and "X-Amz-Signature" not in url
    assert fetch(url) == (200, b"leaf bytes")


# Run last: these depend on ListObjects and DeleteObject (bucketops.py).


def _needs(storage: Any, call: str) -> None:
    """Skip until the operation is implemented (plantcdn answers 501 NotImplemented)."""
    from botocore.exceptions import ClientError

    try:
        if call == "list":
            storage.connection.meta.client.list_objects(Bucket=storage.bucket_name, MaxKeys=1)
        else:
            storage.connection.meta.client.delete_object(
                Bucket=storage.bucket_name, Key="company_0/plant_0/never-stored"
            )
    except ClientError as err:
        if err.response["Error"]["Code"] == "NotImplemented":
            pytest.skip(f"{call} is not implemented yet")
        raise


def test_listdir(storages: Any, tenant: str) -> None:
    """listdir() returns the folders and files directly below a prefix."""
    storage = storages["default"]
    _needs(storage, "list")
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        storage.save(f"{tenant}/dir/{name}", ContentFile(b"x"))
    directories, files = storage.listdir(f"{tenant}/dir/")
    assert directories == ["sub"]
    assert sorted(files) == ["a.txt", "b.txt"]


def test_delete(storages: Any, server: RunningServer, tenant: str) -> None:
    """delete() removes the object; exists() is then False."""
    storage = storages["default"]
    _needs(storage, "delete")
    name = storage.save(f"{tenant}/gone.txt", ContentFile(b"bye"))
    storage.delete(name)
    assert not storage.exists(name)
    assert not (server.bucket_dir(INBOX) / name).exists()
