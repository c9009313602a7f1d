"""Range parsing and conditional-request precedence (GetObject API reference)."""

from __future__ import annotations

import pytest

from plantcdn.conditions import NOT_MODIFIED, evaluate_preconditions, parse_range
from plantcdn.errors import S3Error

ETAG = '"0123456789abcdef0123456789abcdef"'
MODIFIED = 1_700_000_000.0
NOW = MODIFIED + 3600
BEFORE = "Tue, 14 Nov 2023 22:00:00 GMT"  # earlier than MODIFIED (22:13:20)
AFTER = "Tue, 14 Nov 2023 22:30:00 GMT"  # later than MODIFIED, earlier than NOW


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=95-200", 100, (95, 99)),
        ("bytes=-500", 100, (0, 99)),
        (None, 100, None),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
        ("bytes=5-1", 100, None),
    ],
)
def test_range_header_selects_bytes(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=0-", 0), ("bytes=-0", 10)]
)
def test_unsatisfiable_range_is_invalid_range(header: str, size: int) -> None:
    with pytest.raises(S3Error) as info:
        parse_range(header, size)
    assert (info.value.status, info.value.code) == (416, "InvalidRange")
    assert info.value.headers["Content-Range"] == f"bytes */{size}"


def check(**headers: str) -> int | None:
    return evaluate_preconditions(
        {k.replace("_", "-"): v for k, v in headers.items()}, ETAG, MODIFIED, now=NOW
    )


def test_if_none_match_with_current_etag_is_not_modified() -> None:
    assert check(if_none_match=ETAG) == NOT_MODIFIED
    assert check(if_none_match="*") == NOT_MODIFIED


def test_if_match_with_other_etag_fails() -> None:
    with pytest.raises(S3Error) as info:
        check(if_match='"other"')
    assert (info.value.status, info.value.code) == (412, "PreconditionFailed")


def test_if_match_true_overrides_false_if_unmodified_since() -> None:
    assert check(if_match=ETAG, if_unmodified_since=BEFORE) is None


def test_if_unmodified_since_earlier_than_modification_fails() -> None:
    with pytest.raises(S3Error):
        check(if_unmodified_since=BEFORE)


def test_if_none_match_decides_over_if_modified_since() -> None:
    assert check(if_none_match='"other"', if_modified_since=AFTER) is None
    assert check(if_none_match=ETAG, if_modified_since=BEFORE) == NOT_MODIFIED


def test_if_modified_since_alone_compares_dates() -> None:
    assert check(if_modified_since=AFTER) == NOT_MODIFIED
    assert check(if_modified_since=BEFORE) is None


def test_unparseable_dates_are_ignored() -> None:
    assert check(if_modified_since="yesterday", if_unmodified_since="soon") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-" + "9" * 5000, (0, 99)),
        ("bytes=" + "0" * 5000 + "5-9", (5, 9)),
        ("bytes=-" + "9" * 5000, (0, 99)),
    ],
)
def test_huge_range_numbers_are_read_not_a_server_error(
    header: str, expected: tuple[int, int]
) -> None:
    """Python refuses int() of more than 4,300 digits: such offsets count as 'past the end'."""
    assert parse_range(header, 100) == expected


def test_a_huge_range_start_is_unsatisfiable() -> None:
    with pytest.raises(S3Error) as info:
        parse_range("bytes=" + "9" * 5000 + "-", 100)
    assert info.value.code == "InvalidRange"
