"""boto3's default presigned URLs (SigV2 against a custom endpoint) work end to end."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from conftest import INBOX, REGION, RunningServer


def default_client(server: RunningServer, secret: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret or server.secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def test_default_presigned_get_url_downloads_the_object(server: RunningServer, tenant: str) -> None:
    s3 = default_client(server)
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/v2.txt", Body=b"signed the old way")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": f"{tenant}/v2.txt"}
    )
    with urllib.request.urlopen(url) as response:  # noqa: S310 - loopback test server
        assert response.read() == b"signed the old way"


def test_default_presigned_url_with_wrong_secret_is_signature_does_not_match(
    server: RunningServer, tenant: str
) -> None:
    url = default_client(server, secret="wrong").generate_presigned_url(
        "get_object", Params={"Bucket": INBOX, "Key": f"{tenant}/v2.txt"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url)  # noqa: S310
    assert info.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in info.value.read()


def test_sigv2_header_signed_client_round_trips(server: RunningServer, tenant: str) -> None:
    s3: Any = boto3.client(
        "s3",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=BotoConfig(signature_version="s3", s3={"addressing_style": "path"}),
    )
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/h.txt", Body=b"v2 header", ContentType="text/plain")
    got = s3.get_object(Bucket=INBOX, Key=f"{tenant}/h.txt")
    assert got["Body"].read() == b"v2 header"
    assert got["ContentType"] == "text/plain"
