"""Signed URLs and signed cookies on ``/cdn`` (a distribution with restricted viewer access).

Every accepted URL is produced by a real signer: botocore's ``CloudFrontSigner``
(what boto3 users call) and django-storages' ``S3Storage.url()`` with
``cloudfront_key``/``cloudfront_key_id`` (what Plant-DB's templates call).
Each refusal starts from such a URL with one change and expects CloudFront's
403 document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.signers import CloudFrontSigner
from conftest import RunningServer, clean_env
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from test_cdn_support import Reply, fetch, put

KEY_ID = "K2JCJMDEHXQW5F"
OTHER_KEY_ID = "K3OTHERKEY0001"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UNTRUSTED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TENANT = "company_77/plant_1"


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _signer(key_id: str = KEY_ID, key: rsa.RSAPrivateKey = PRIVATE_KEY) -> CloudFrontSigner:
    return CloudFrontSigner(key_id, lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A daemon whose key group holds two keys: one as a PEM file, one as PEM text."""
    folder = tmp_path_factory.mktemp("cf-keys")
    (folder / "main.pem").write_text(_public_pem(PRIVATE_KEY))
    keys_file = folder / "cloudfront-keys.json"
    keys_file.write_text(
        json.dumps({KEY_ID: "main.pem", OTHER_KEY_ID: _public_pem(OTHER_PRIVATE_KEY)})
    )
    data = tmp_path_factory.mktemp("signed-data")
    running = RunningServer(
        data,
        clean_env({"PLANTCDN_FSYNC": "false", "PLANTCDN_CLOUDFRONT_PUBLIC_KEYS": str(keys_file)}),
    )
    try:
        put(running, f"{TENANT}/photo.webp", b"PHOTO", ContentType="image/webp")
        put(running, f"{TENANT}/other.webp", b"OTHER", ContentType="image/webp")
        yield running
    finally:
        running.stop()


def _url(server: RunningServer, name: str = "photo.webp") -> str:
    return f"{server.url}/cdn/{TENANT}/{name}"


def _get(url: str, server: RunningServer, **kwargs: object) -> Reply:
    return fetch(server, url[len(server.url) :], **kwargs)  # type: ignore[arg-type]


def _expires(seconds: int = 3600) -> datetime:
    return datetime.fromtimestamp(int(time.time()) + seconds, tz=UTC)


def _assert_denied(reply: Reply, code: str, message: str) -> None:
    assert reply.status == 403
    assert reply.header("content-type") == "text/xml"
    assert reply.header("x-cache") == "Error from cloudfront"
    assert reply.header("server") == "CloudFront"
    assert (
        reply.body
        == (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>"
        ).encode()
    )
    assert b"PHOTO" not in reply.body


def test_unsigned_request_is_refused_with_missing_key(signed_server: RunningServer) -> None:
    """No signature at all: CloudFront's MissingKey document."""
    reply = _get(_url(signed_server), signed_server)
    _assert_denied(reply, "MissingKey", "Missing Key-Pair-Id query parameter or cookie value")


def test_unsigned_request_for_a_missing_object_is_refused_before_the_lookup(
    signed_server: RunningServer,
) -> None:
    """Signatures are checked before the origin is asked: 403, not 404."""
    reply = _get(_url(signed_server, "nope.webp"), signed_server)
    assert reply.status == 403


def test_botocore_canned_url_is_served(signed_server: RunningServer) -> None:
    url = _signer().generate_presigned_url(_url(signed_server), date_less_than=_expires())
    reply = _get(url, signed_server)
    assert reply.status == 200
    assert reply.body == b"PHOTO"
    assert reply.header("content-type") == "image/webp"


def test_head_with_a_canned_url_is_served(signed_server: RunningServer) -> None:
    url = _signer().generate_presigned_url(_url(signed_server), date_less_than=_expires())
    reply = _get(url, signed_server, method="HEAD")
    assert reply.status == 200
    assert reply.header("content-length") == "5"


def test_second_key_of_the_group_given_as_pem_text_is_trusted(signed_server: RunningServer):
    signer = _signer(OTHER_KEY_ID, OTHER_PRIVATE_KEY)
    url = signer.generate_presigned_url(_url(signed_server), date_less_than=_expires())
    assert _get(url, signed_server).status == 200


def test_custom_policy_with_wildcard_serves_every_matching_object(signed_server: RunningServer):
    signer = _signer()
    resource = f"{signed_server.url}/cdn/{TENANT}/*"
    policy = signer.build_policy(resource, _expires())
    for name, body in (("photo.webp", b"PHOTO"), ("other.webp", b"OTHER")):
        url = signer.generate_presigned_url(_url(signed_server, name), policy=policy)
        assert _get(url, signed_server).body == body


def test_custom_policy_for_the_clients_address_is_served(signed_server: RunningServer) -> None:
    signer = _signer()
    policy = signer.build_policy(_url(signed_server), _expires(), ip_address="127.0.0.1/32")
    url = signer.generate_presigned_url(_url(signed_server), policy=policy)
    assert _get(url, signed_server).status == 200


def test_signed_cookies_are_served(signed_server: RunningServer) -> None:
    """CloudFront-Policy, CloudFront-Signature and CloudFront-Key-Pair-Id cookies."""
    signer = _signer()
    policy = signer.build_policy(f"{signed_server.url}/cdn/{TENANT}/*", _expires()).encode()
    cookies = {
        "CloudFront-Policy": signer._url_b64encode(policy).decode(),
        "CloudFront-Signature": signer._url_b64encode(signer.rsa_signer(policy)).decode(),
        "CloudFront-Key-Pair-Id": KEY_ID,
    }
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    reply = fetch(signed_server, f"/cdn/{TENANT}/other.webp", headers={"Cookie": header})
    assert reply.status == 200
    assert reply.body == b"OTHER"


def test_django_storages_cloudfront_url_is_served(signed_server: RunningServer) -> None:
    """``S3Storage(custom_domain=..., cloudfront_key=..., cloudfront_key_id=...).url()``."""
    django_conf = pytest.importorskip("django.conf")
    if not django_conf.settings.configured:
        django_conf.settings.configure()
    s3 = pytest.importorskip("storages.backends.s3")
    storage = s3.S3Storage(
        bucket_name="plantdb-longterm",
        custom_domain=f"127.0.0.1:{signed_server.port}/cdn",
        url_protocol="http:",
        cloudfront_key=_private_pem(PRIVATE_KEY),
        cloudfront_key_id=KEY_ID,
    )
    url = storage.url(f"{TENANT}/photo.webp")
    assert "Signature=" in url and f"Key-Pair-Id={KEY_ID}" in url
    reply = _get(url, signed_server)
    assert reply.status == 200
    assert reply.body == b"PHOTO"


# -- refusals: one change each ----------------------------------------------------


def test_expired_url_is_access_denied(signed_server: RunningServer) -> None:
    url = _signer().generate_presigned_url(_url(signed_server), date_less_than=_expires(-10))
    _assert_denied(_get(url, signed_server), "AccessDenied", "Access denied")


def test_tampered_signature_is_access_denied(signed_server: RunningServer) -> None:
    url = _signer().generate_presigned_url(_url(signed_server), date_less_than=_expires())
    base, _, signature_and_rest = url.partition("Signature=")
    flipped = ("B" if signature_and_rest[10] == "A" else "A").join(
        (signature_and_rest[:10], signature_and_rest[11:])
    )
    _assert_denied(
        _get(base + "Signature=" + flipped, signed_server), "AccessDenied", "Access denied"
    )


def test_unknown_key_pair_id_is_invalid_key(signed_server: RunningServer) -> None:
    url = _signer("KUNKNOWN000001", UNTRUSTED_KEY).generate_presigned_url(
        _url(signed_server), date_less_than=_expires()
    )
    _assert_denied(_get(url, signed_server), "InvalidKey", "Unknown Key")


def test_trusted_key_id_with_an_untrusted_private_key_is_access_denied(signed_server):
    url = _signer(KEY_ID, UNTRUSTED_KEY).generate_presigned_url(
        _url(signed_server), date_less_than=_expires()
    )
    _assert_denied(_get(url, signed_server), "AccessDenied", "Access denied")


def test_canned_url_used_for_another_object_is_access_denied(signed_server: RunningServer):
    url = _signer().generate_presigned_url(_url(signed_server), date_less_than=_expires())
    moved = url.replace("/photo.webp?", "/other.webp?")
    _assert_denied(_get(moved, signed_server), "AccessDenied", "Access denied")


def test_custom_policy_for_another_folder_is_access_denied(signed_server: RunningServer):
    signer = _signer()
    policy = signer.build_policy(f"{signed_server.url}/cdn/company_78/*", _expires())
    url = signer.generate_presigned_url(_url(signed_server), policy=policy)
    _assert_denied(_get(url, signed_server), "AccessDenied", "Access denied")


def test_custom_policy_for_another_address_is_access_denied(signed_server: RunningServer):
    signer = _signer()
    policy = signer.build_policy(_url(signed_server), _expires(), ip_address="192.0.2.0/24")
    url = signer.generate_presigned_url(_url(signed_server), policy=policy)
    _assert_denied(_get(url, signed_server), "AccessDenied", "Access denied")


def test_custom_policy_not_yet_valid_is_access_denied(signed_server: RunningServer) -> None:
    signer = _signer()
    policy = signer.build_policy(_url(signed_server), _expires(), date_greater_than=_expires(600))
    url = signer.generate_presigned_url(_url(signed_server), policy=policy)
    _assert_denied(_get(url, signed_server), "AccessDenied", "Access denied")


def test_url_signed_for_another_host_is_access_denied(signed_server: RunningServer) -> None:
    signer = _signer()
    other = f"http://d111111abcdef8.cloudfront.net/cdn/{TENANT}/photo.webp"
    url = signer.generate_presigned_url(other, date_less_than=_expires())
    query = url.partition("?")[2]
    reply = fetch(signed_server, f"/cdn/{TENANT}/photo.webp?{query}")
    _assert_denied(reply, "AccessDenied", "Access denied")


def test_signing_is_off_without_configured_keys(server: RunningServer, tenant: str) -> None:
    """The default daemon serves /cdn without signatures."""
    put(server, f"{tenant}/open.webp", b"OPEN", ContentType="image/webp")
    assert fetch(server, f"/cdn/{quote(tenant)}/open.webp").body == b"OPEN"


def test_unreadable_key_file_stops_the_start(tmp_path: Path) -> None:
    """A key group that cannot be loaded is a start-up error, not a silent open door."""
    (tmp_path / "keys.json").write_text(json.dumps({KEY_ID: "-----BEGIN PUBLIC KEY-----\nnope"}))
    with pytest.raises(RuntimeError, match="not a PEM public key"):
        RunningServer(
            tmp_path,
            clean_env({"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS": str(tmp_path / "keys.json")}),
        )
