"""Path-style and virtual-hosted addressing, and picking the S3 operation."""

from __future__ import annotations

import pytest

from plantcdn.errors import S3Error
from plantcdn.routing import Target, operation_for, resolve_target


def test_path_style_splits_bucket_and_decoded_key() -> None:
    assert resolve_target(
        "127.0.0.1:8001", "/plantdb-inbox/company_1/plant_2/a%20b.jpg", "localhost"
    ) == Target("plantdb-inbox", "company_1/plant_2/a b.jpg", False)


def test_virtual_hosted_style_takes_bucket_from_host() -> None:
    assert resolve_target(
        "plantdb-inbox.localhost:8001", "/company_1/plant_2/x", "localhost"
    ) == Target("plantdb-inbox", "company_1/plant_2/x", True)


def test_root_is_the_service() -> None:
    assert resolve_target("localhost", "/", "localhost") == Target(None, None, False)


def test_invalid_utf8_in_path_is_invalid_uri() -> None:
    with pytest.raises(S3Error) as info:
        resolve_target("localhost", "/b/%ff", "localhost")
    assert info.value.code == "InvalidURI"


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "op"),
    [
        ("PUT", "k", {}, {}, "PutObject"),
        ("GET", "k", {}, {}, "GetObject"),
        ("HEAD", "k", {}, {}, "HeadObject"),
        ("DELETE", "k", {}, {}, "DeleteObject"),
        ("PUT", "k", {}, {"x-amz-copy-source": "/b/k"}, "CopyObject"),
        ("POST", None, {}, {}, "PostObject"),
        ("GET", None, {"list-type": "2"}, {}, "ListObjectsV2"),
        ("POST", "k", {"uploads": ""}, {}, "CreateMultipartUpload"),
        ("PUT", "k", {"uploadId": "u", "partNumber": "1"}, {}, "UploadPart"),
        ("GET", None, {"cors": ""}, {}, "GetBucketCors"),
    ],
)
def test_operation_is_chosen_by_method_key_and_subresource(
    method: str, key: str | None, query: dict[str, str], headers: dict[str, str], op: str
) -> None:
    assert operation_for(method, Target("b", key, False), query, headers) == op


def test_unsupported_subresource_is_not_implemented() -> None:
    with pytest.raises(S3Error) as info:
        operation_for("GET", Target("b", None, False), {"lifecycle": ""}, {})
    assert (info.value.status, info.value.code) == (501, "NotImplemented")
