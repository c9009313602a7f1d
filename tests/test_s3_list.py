"""ListObjectsV2 and ListObjects against the real daemon, driven by boto3 (and raw HTTP)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import INBOX, LONGTERM, RunningServer

EXPECTED_ORDER = [
    "a-c.txt",
    "a.txt",
    "a/b/c.txt",
    "a/x.txt",
    "a0.txt",
    "b + c.txt",
    "sub/deep/1",
    "sub/deep/2",
    "sub/one",
    "é.txt",
    "日本.txt",
    "\U0001f331.txt",
]


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: Any = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture
def listed(server: RunningServer, tenant: str) -> tuple[Any, str]:
    """A tenant folder holding keys whose UTF-8 order differs from folder order."""
    s3: Any = server.client()
    for name in reversed(EXPECTED_ORDER):
        s3.put_object(Bucket=INBOX, Key=f"{tenant}/{name}", Body=name.encode())
    return s3, tenant + "/"


def test_v2_lists_keys_in_utf8_binary_order(listed: tuple[Any, str]) -> None:
    """Keys come back in UTF-8 byte order, with size, ETag, date and storage class."""
    s3, prefix = listed
    result = s3.list_objects_v2(Bucket=INBOX, Prefix=prefix)
    keys = [c["Key"] for c in result["Contents"]]
    assert keys == [prefix + name for name in EXPECTED_ORDER]
    assert result["KeyCount"] == len(EXPECTED_ORDER)
    assert result["IsTruncated"] is False
    assert "NextContinuationToken" not in result
    first = result["Contents"][0]
    assert first["Size"] == len(b"a-c.txt")
    assert re.fullmatch(r'"[0-9a-f]{32}"', first["ETag"])
    assert isinstance(first["LastModified"], datetime)
    assert first["StorageClass"] == "STANDARD"
    assert "Owner" not in first


def test_v2_raw_xml_has_millisecond_timestamps(server: RunningServer, listed: Any) -> None:
    """LastModified is ISO 8601 with milliseconds and Z, as S3 writes it."""
    s3, prefix = listed
    seen: dict[str, bytes] = {}
    s3.meta.events.register(
        "after-call.s3.ListObjectsV2",
        lambda http_response, **_: seen.setdefault("body", http_response.content),
    )
    s3.list_objects_v2(Bucket=INBOX, Prefix=prefix, MaxKeys=1)
    body = seen["body"].decode()
    assert re.search(r"<LastModified>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</LastModified>", body)
    assert 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in body


def test_v2_delimiter_common_prefixes(listed: tuple[Any, str]) -> None:
    """With Delimiter="/" folders roll up into CommonPrefixes."""
    s3, prefix = listed
    result = s3.list_objects_v2(Bucket=INBOX, Prefix=prefix, Delimiter="/")
    assert [p["Prefix"] for p in result["CommonPrefixes"]] == [prefix + "a/", prefix + "sub/"]
    assert [c["Key"][len(prefix) :] for c in result["Contents"]] == [
        n for n in EXPECTED_ORDER if "/" not in n
    ]
    assert result["KeyCount"] == 7 + 2  # keys and common prefixes both count


def test_v2_pages_with_tokens_and_start_after(listed: tuple[Any, str]) -> None:
    """MaxKeys pages chain through NextContinuationToken; StartAfter starts after a key."""
    s3, prefix = listed
    keys: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": INBOX, "Prefix": prefix, "MaxKeys": 5}
    while True:
        page = s3.list_objects_v2(**kwargs)
        keys += [c["Key"] for c in page["Contents"]]
        assert page["KeyCount"] <= 5
        if not page["IsTruncated"]:
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert keys == [prefix + n for n in EXPECTED_ORDER]
    after = s3.list_objects_v2(Bucket=INBOX, Prefix=prefix, StartAfter=prefix + "sub/deep/2")
    assert [c["Key"] for c in after["Contents"]] == [prefix + n for n in EXPECTED_ORDER[8:]]
    assert after["StartAfter"] == prefix + "sub/deep/2"


def test_v2_fetch_owner_and_url_encoding(listed: tuple[Any, str]) -> None:
    """FetchOwner adds Owner; keys with spaces and '+' survive botocore's url decoding."""
    s3, prefix = listed
    result = s3.list_objects_v2(Bucket=INBOX, Prefix=prefix + "b + c", FetchOwner=True)
    assert [c["Key"] for c in result["Contents"]] == [prefix + "b + c.txt"]
    assert re.fullmatch(r"[0-9a-f]{64}", result["Contents"][0]["Owner"]["ID"])
    assert result["Prefix"] == prefix + "b + c"


def test_v2_checksum_algorithm_listed(server: RunningServer, tenant: str) -> None:
    """An object stored with a checksum lists its ChecksumAlgorithm."""
    s3: Any = server.client(request_checksum_calculation="when_supported")
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/crc", Body=b"x", ChecksumAlgorithm="CRC32")
    result = s3.list_objects_v2(Bucket=INBOX, Prefix=tenant + "/")
    assert result["Contents"][0]["ChecksumAlgorithm"] == ["CRC32"]


def test_v2_empty_prefix_lists_nothing(server: RunningServer) -> None:
    s3: Any = server.client()
    result = s3.list_objects_v2(Bucket=LONGTERM, Prefix="company_999999/nothing/")
    assert result["KeyCount"] == 0 and "Contents" not in result and result["IsTruncated"] is False


def test_never_lists_internal_files(server: RunningServer, tenant: str) -> None:
    """Temporary and metadata files under .plantcdn/ never appear in a listing."""
    s3: Any = server.client()
    s3.put_object(Bucket=LONGTERM, Key=f"{tenant}/x", Body=b"x")
    assert (server.bucket_dir(LONGTERM) / ".plantcdn" / "meta").is_dir()
    keys = [c["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=LONGTERM)
            for c in p.get("Contents", [])]  # fmt: skip
    assert keys and not any(k.startswith(".plantcdn") for k in keys)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LONGTERM, Delimiter="/"):
        assert not any(p["Prefix"].startswith(".") for p in page.get("CommonPrefixes", []))


def test_paginator_over_more_than_1000_keys_with_delimiter(
    server: RunningServer, tenant: str
) -> None:
    """The list_objects_v2 paginator walks 1100 keys and 30 folders in exact order, 1000 a page."""
    folder = server.bucket_dir(INBOX) / tenant
    expected: list[str] = []
    s3: Any = server.client()
    # Plant files by hand (as a person may) to keep the test fast; one goes through PutObject.
    for i in range(1100):
        name = f"k{i:05d}"
        (folder).mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
        expected.append(f"{tenant}/{name}")
    for j in range(30):
        sub = folder / f"d{j:02d}"
        sub.mkdir()
        (sub / "inner").write_bytes(b"")
    s3.put_object(Bucket=INBOX, Key=f"{tenant}/k00000", Body=b"via put")
    prefixes = [f"{tenant}/d{j:02d}/" for j in range(30)]
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=INBOX, Prefix=tenant + "/", Delimiter="/"
        )
    )
    assert [p["KeyCount"] for p in pages] == [1000, 130]
    got_prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    got_keys = [c["Key"] for page in pages for c in page.get("Contents", [])]
    assert got_prefixes == prefixes
    assert got_keys == expected
    # First page: 30 folders (d.. sorts before k..) then 970 keys.
    assert len(pages[0]["CommonPrefixes"]) == 30 and len(pages[0]["Contents"]) == 970
    # v1 paginator (Marker / NextMarker) gives the same sequence.
    v1 = list(
        s3.get_paginator("list_objects").paginate(Bucket=INBOX, Prefix=tenant + "/", Delimiter="/")
    )
    assert [c["Key"] for page in v1 for c in page.get("Contents", [])] == expected
    assert [p["Prefix"] for page in v1 for p in page.get("CommonPrefixes", [])] == prefixes
    # Small pages resume correctly after a common prefix.
    small = s3.get_paginator("list_objects_v2").paginate(
        Bucket=INBOX, Prefix=tenant + "/", Delimiter="/", PaginationConfig={"PageSize": 7}
    )
    entries: list[str] = []
    for page in small:
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        entries += [c["Key"] for c in page.get("Contents", [])]
    assert sorted(entries) == sorted(prefixes + expected)
    assert len(entries) == len(set(entries))


def test_v1_marker_and_next_marker(listed: tuple[Any, str]) -> None:
    """ListObjects pages with Marker; NextMarker appears only with a Delimiter."""
    s3, prefix = listed
    first = s3.list_objects(Bucket=INBOX, Prefix=prefix, MaxKeys=2)
    assert [c["Key"] for c in first["Contents"]] == [prefix + n for n in EXPECTED_ORDER[:2]]
    assert first["IsTruncated"] is True and "NextMarker" not in first
    assert re.fullmatch(r"[0-9a-f]{64}", first["Contents"][0]["Owner"]["ID"])
    second = s3.list_objects(Bucket=INBOX, Prefix=prefix, MaxKeys=2, Marker=prefix + "a.txt")
    assert [c["Key"] for c in second["Contents"]] == [prefix + n for n in EXPECTED_ORDER[2:4]]
    with_delim = s3.list_objects(Bucket=INBOX, Prefix=prefix, MaxKeys=3, Delimiter="/")
    assert with_delim["NextMarker"] == prefix + "a/"
    after = s3.list_objects(
        Bucket=INBOX, Prefix=prefix, MaxKeys=3, Delimiter="/", Marker=with_delim["NextMarker"]
    )
    assert [c["Key"] for c in after["Contents"]][:2] == [prefix + "a0.txt", prefix + "b + c.txt"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"Bucket": "no-such-bucket-here"}, 404, "NoSuchBucket"),
        ({"Bucket": INBOX, "ContinuationToken": "garbage!"}, 400, "InvalidArgument"),
        ({"Bucket": INBOX, "MaxKeys": -1}, 400, "InvalidArgument"),
        ({"Bucket": INBOX, "EncodingType": "base64"}, 400, "InvalidArgument"),
    ],
)
def test_v2_refusals(server: RunningServer, kwargs: dict[str, Any], status: int, code: str) -> None:
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.list_objects_v2(**kwargs)
    assert error_of(info) == (status, code)


def test_v1_unknown_bucket(server: RunningServer) -> None:
    s3: Any = server.client()
    with pytest.raises(ClientError) as info:
        s3.list_objects(Bucket="no-such-bucket-here")
    assert error_of(info) == (404, "NoSuchBucket")


def test_max_keys_above_1000_is_capped(listed: tuple[Any, str]) -> None:
    s3, prefix = listed
    result = s3.list_objects_v2(Bucket=INBOX, Prefix=prefix, MaxKeys=5000)
    assert result["MaxKeys"] == 1000 and result["KeyCount"] == len(EXPECTED_ORDER)


def test_unsigned_list_is_refused(server: RunningServer) -> None:
    """Listing needs a signature like every other call."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/{INBOX}?list-type=2")
    assert info.value.code == 403
