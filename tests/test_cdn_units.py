"""``/cdn`` in memory: the resource under ``StubTreq`` with an injected clock, and the
pure caches and configuration.  No daemon, no sleeping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from plantcdn.cdn import CdnResource
from plantcdn.cdncache import DEFAULT_TTL, LRU, BodyCache, EdgeCache, cache_ttl
from plantcdn.config import Config, ConfigError
from plantcdn.storage import ObjectMeta, Storage

KEY = "company_1/plant_2/photo.webp"


def _storage(tmp_path: Path, **config: object) -> tuple[Storage, Config]:
    cfg = Config(data_dir=tmp_path, fsync=False, **config)  # type: ignore[arg-type]
    storage = Storage(cfg)
    storage.prepare()
    return storage, cfg


def _store(storage: Storage, key: str, body: bytes, **meta: object) -> ObjectMeta:
    bucket = storage.bucket("plantdb-longterm")
    fd, temp = storage.new_temp(bucket)
    os.write(fd, body)
    os.close(fd)
    described = ObjectMeta(
        etag='"' + "ab" * 16 + '"', size=0, last_modified=1_700_000_000.0, **meta
    )  # type: ignore[arg-type]
    return storage.commit(bucket, key, temp, described)


def _client(
    tmp_path: Path, clock: Clock, **config: object
) -> tuple[StubTreq, Storage, CdnResource]:
    storage, cfg = _storage(tmp_path, **config)
    resource = CdnResource(cfg, storage, clock=clock.seconds, mount=b"/")
    return StubTreq(resource), storage, resource


def _fetch(stub: StubTreq, path: str, method: str = "GET", headers: dict | None = None):
    case = SynchronousTestCase()
    requested = stub.request(method, "http://cdn.test/" + path, headers=headers or {})
    for _ in range(64):  # the in-memory transport moves one batch of writes per pump
        stub.flush()
    response = case.successResultOf(requested)
    content = response.content()
    stub.flush()
    return response, case.successResultOf(content)


def test_age_counts_injected_seconds_and_ttl_expiry_is_a_refresh_hit(tmp_path: Path) -> None:
    """Miss at t=0, Hit with Age 42 at t=42, RefreshHit once max-age (60 s) has passed."""
    clock = Clock()
    stub, storage, _ = _client(tmp_path, clock)
    _store(storage, KEY, b"PHOTO", content_type="image/webp", cache_control="max-age=60")
    response, body = _fetch(stub, KEY)
    assert body == b"PHOTO"
    assert response.headers.getRawHeaders("x-cache") == ["Miss from cloudfront"]
    clock.advance(42)
    response, _ = _fetch(stub, KEY)
    assert response.headers.getRawHeaders("x-cache") == ["Hit from cloudfront"]
    assert response.headers.getRawHeaders("age") == ["42"]
    clock.advance(30)
    response, _ = _fetch(stub, KEY)
    assert response.headers.getRawHeaders("x-cache") == ["RefreshHit from cloudfront"]
    assert response.headers.getRawHeaders("age") is None


def test_rewrite_between_requests_is_served_with_its_own_metadata(tmp_path: Path) -> None:
    """The metadata cache is keyed by inode: a new version never shows old headers."""
    clock = Clock()
    stub, storage, resource = _client(tmp_path, clock)
    _store(storage, KEY, b"one", content_type="image/webp")
    _fetch(stub, KEY)
    _store(storage, KEY, b"second", content_type="image/avif", cache_control="no-cache")
    response, body = _fetch(stub, KEY)
    assert body == b"second"
    assert response.headers.getRawHeaders("content-type") == ["image/avif"]
    assert response.headers.getRawHeaders("cache-control") == ["no-cache"]
    assert response.headers.getRawHeaders("x-cache") == ["Miss from cloudfront"]


def test_metadata_cache_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    storage, cfg = _storage(tmp_path)
    resource = CdnResource(cfg, storage, clock=clock.seconds, mount=b"/", meta_cache_size=3)
    stub = StubTreq(resource)
    for n in range(10):
        _store(storage, f"company_1/plant_2/{n}.webp", b"x", content_type="image/webp")
        _fetch(stub, f"company_1/plant_2/{n}.webp")
    assert len(resource.versions) == 3


def test_remembered_body_is_served_again_without_opening_the_file(tmp_path: Path) -> None:
    """The second GET of a small object comes from the edge's memory, ranges and HEAD too."""
    clock = Clock()
    stub, storage, resource = _client(tmp_path, clock)
    _store(storage, KEY, b"0123456789", content_type="image/webp")
    _fetch(stub, KEY)
    assert len(resource.bodies) == 1
    resource._open = lambda key: pytest.fail("the file was opened")  # type: ignore[method-assign]
    response, body = _fetch(stub, KEY)
    assert (response.code, body) == (200, b"0123456789")
    assert response.headers.getRawHeaders("x-cache") == ["Hit from cloudfront"]
    response, body = _fetch(stub, KEY, headers={"Range": "bytes=2-4"})
    assert (response.code, body) == (206, b"234")
    assert response.headers.getRawHeaders("content-range") == ["bytes 2-4/10"]
    response, body = _fetch(stub, KEY, method="HEAD")
    assert (response.code, body) == (200, b"")
    assert response.headers.getRawHeaders("content-length") == ["10"]


def test_hand_edit_of_a_remembered_body_is_served_fresh(tmp_path: Path) -> None:
    """Same inode and size, new content and mtime: the remembered body no longer matches."""
    clock = Clock()
    stub, storage, _ = _client(tmp_path, clock)
    _store(storage, KEY, b"aaaa", content_type="image/webp")
    _fetch(stub, KEY)
    path = storage.bucket("plantdb-longterm").root / KEY
    with open(path, "r+b") as edited:
        edited.write(b"bbbb")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    _response, body = _fetch(stub, KEY)
    assert body == b"bbbb"


def test_body_cache_is_bounded_by_bytes_and_skips_large_objects() -> None:
    cache = BodyCache(max_bytes=10, max_object=6)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    cache.put("big", b"1234567")
    assert cache.get("big") is None
    assert (len(cache), cache.size) == (2, 10)
    cache.get("a")
    cache.put("c", b"123")
    assert cache.get("b") is None and cache.get("a") == b"12345" and cache.get("c") == b"123"
    assert cache.size == 8


def test_file_placed_by_hand_gets_a_guessed_type(tmp_path: Path) -> None:
    """Without stored metadata there is nothing better than the file name."""
    clock = Clock()
    stub, storage, _ = _client(tmp_path, clock)
    folder = storage.bucket("plantdb-longterm").root / "company_1" / "plant_2"
    folder.mkdir(parents=True)
    (folder / "hand.png").write_bytes(b"\x89PNG")
    response, body = _fetch(stub, "company_1/plant_2/hand.png")
    assert body == b"\x89PNG"
    assert response.headers.getRawHeaders("content-type") == ["image/png"]
    assert response.headers.getRawHeaders("etag") is not None


def test_object_larger_than_a_chunk_streams_through_the_producer(tmp_path: Path) -> None:
    clock = Clock()
    stub, storage, _ = _client(tmp_path, clock)
    data = os.urandom(700 * 1024)
    _store(storage, KEY, data, content_type="image/webp")
    response, body = _fetch(stub, KEY)
    assert response.code == 200
    assert body == data


def test_edge_cache_forgets_the_least_recently_used_version() -> None:
    clock = Clock()
    edge = EdgeCache(clock.seconds, max_entries=2)
    assert edge.status("a", 100) == ("Miss", None)
    assert edge.status("b", 100) == ("Miss", None)
    assert edge.status("a", 100) == ("Hit", 0)
    assert edge.status("c", 100) == ("Miss", None)  # evicts b
    assert edge.status("b", 100) == ("Miss", None)


def test_lru_refuses_a_zero_bound() -> None:
    with pytest.raises(ValueError):
        LRU(0)


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, DEFAULT_TTL),
        ("public", DEFAULT_TTL),
        ("max-age=600", 600),
        ("public, max-age=600, s-maxage=30", 30),
        ("max-age=0", 1),
        ("no-store", 1),
        ("max-age=999999999", 31_536_000),
    ],
)
def test_cache_ttl_follows_cache_control_within_the_policy_bounds(cache_control, ttl) -> None:
    assert cache_ttl(cache_control) == ttl


# -- configuration ---------------------------------------------------------------------


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_public_keys_file_accepts_pem_paths_and_pem_text(tmp_path: Path) -> None:
    first, second = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)
    )
    (tmp_path / "a.pem").write_text(_pem(first))
    (tmp_path / "keys.json").write_text(json.dumps({"KA": "a.pem", "KB": _pem(second)}))
    config = Config.from_environ(
        {"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS": str(tmp_path / "keys.json")}, data_dir=tmp_path
    )
    assert dict(config.cloudfront_public_keys) == {"KA": _pem(first), "KB": _pem(second)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"K": 1}', "is not a string"),
        ('{"K": "missing.pem"}', "cannot read the PEM"),
        ('{"K": "-----BEGIN PUBLIC KEY-----\\ngarbage"}', "not a PEM public key"),
    ],
)
def test_bad_public_keys_file_is_a_config_error(tmp_path: Path, content: str, message: str):
    (tmp_path / "keys.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        Config.from_environ({"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS": str(tmp_path / "keys.json")})


def test_missing_status_setting(tmp_path: Path) -> None:
    assert Config.from_environ({}).cdn_missing_status == 404
    assert Config.from_environ({"PLANTCDN_CDN_MISSING": "403"}).cdn_missing_status == 403
    with pytest.raises(ConfigError, match="PLANTCDN_CDN_MISSING"):
        Config.from_environ({"PLANTCDN_CDN_MISSING": "410"})


def test_cors_settings_build_a_policy() -> None:
    config = Config.from_environ(
        {"PLANTCDN_CDN_CORS_ORIGINS": "https://a.example,https://b.example",
         "PLANTCDN_CDN_CORS_MAX_AGE": "60"}
    )  # fmt: skip
    assert config.cdn_cors is not None
    assert config.cdn_cors.allow_origins == ("https://a.example", "https://b.example")
    assert config.cdn_cors.max_age == 60
    assert Config.from_environ({}).cdn_cors is None
