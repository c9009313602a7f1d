"""Pure list pagination and the sorted folder walk, against a naive model of S3 listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantcdn.errors import S3Error
from plantcdn.listing import (
    MAX_KEYS,
    Entry,
    decode_token,
    encode_token,
    paginate,
    parse_max_keys,
    walk_keys,
)

TRICKY = [
    "a",
    "a-c",
    "a.txt",
    "b/c-d/e",
    "b/c.d",
    "b/c/d",
    "b/c0",
    "b0",
    "bé/x",
    "b\u65e5/y",
    "b\U0001f331/z",
    "company_1/plant_1/x.jpg",
    "company_1/plant_10/y.jpg",
    "company_1/plant_2/z.jpg",
]


def model(
    keys: list[str], prefix: str, delimiter: str, after: str | None
) -> list[tuple[str, bool]]:
    """S3's listing, the slow way: filter, sort by UTF-8 bytes, roll up, drop repeats."""
    out: list[tuple[str, bool]] = []
    for key in sorted(keys, key=lambda k: k.encode("utf-8")):
        if not key.startswith(prefix) or (after is not None and key <= after):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            cp = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if cp == after or (out and out[-1] == (cp, True)):
                continue
            out.append((cp, True))
        else:
            out.append((key, False))
    return out


def plant(root: Path, keys: list[str]) -> None:
    for key in keys:
        path = root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


def entries(page_entries: tuple[Entry, ...]) -> list[tuple[str, bool]]:
    return [(e.name, e.is_prefix) for e in page_entries]


def test_walk_yields_utf8_binary_order(tmp_path: Path) -> None:
    """Files and folders whose names sort differently than their keys come out in key order."""
    plant(tmp_path, TRICKY)
    (tmp_path / ".plantcdn" / "meta").mkdir(parents=True)
    (tmp_path / ".plantcdn" / "meta" / "x.json").write_text("{}")
    keys, _ = walk_keys(tmp_path)
    assert list(keys) == sorted(TRICKY, key=lambda k: k.encode("utf-8"))


def test_walk_prunes_by_prefix_and_after(tmp_path: Path) -> None:
    """A prefix and a start key leave out everything before or outside them."""
    plant(tmp_path, TRICKY)
    keys, _ = walk_keys(tmp_path, prefix="b/c", after="b/c-d/e")
    assert list(keys) == ["b/c.d", "b/c/d", "b/c0"]
    keys, _ = walk_keys(tmp_path, prefix="b", after="b/c/d")
    assert list(keys) == ["b/c0", "b0", "bé/x", "b\u65e5/y", "b\U0001f331/z"]


def test_walk_never_lists_internal_files_or_empty_folders(tmp_path: Path) -> None:
    """Only files are keys: plantcdn's folder and empty folders are not listed."""
    plant(tmp_path, ["company_1/plant_1/a"])
    (tmp_path / "company_1" / "empty").mkdir()
    (tmp_path / ".plantcdn" / "tmp").mkdir(parents=True)
    (tmp_path / ".plantcdn" / "tmp" / "x.part").write_bytes(b"")
    keys, _ = walk_keys(tmp_path)
    assert list(keys) == ["company_1/plant_1/a"]


def test_delimiter_rolls_up_and_counts_prefixes() -> None:
    """Common prefixes count against max-keys, and a truncated page ends on one."""
    keys = ["a/1", "a/2", "b", "c/1", "d"]
    page = paginate(keys, delimiter="/", max_keys=2)
    assert entries(page.entries) == [("a/", True), ("b", False)]
    assert page.is_truncated
    page = paginate(keys, delimiter="/", max_keys=3)
    assert page.common_prefixes == ["a/", "c/"] and page.keys == ["b"]
    assert page.last == "c/" and page.is_truncated


def test_resuming_after_a_common_prefix_skips_its_keys() -> None:
    """The next page after a common prefix starts after all keys under it."""
    keys = ["a/1", "a/2", "a/3", "b"]
    page = paginate(keys, delimiter="/", after="a/")
    assert entries(page.entries) == [("b", False)]


def test_exact_page_is_not_truncated() -> None:
    """A page that holds the last entry says IsTruncated false."""
    page = paginate(["a", "b"], max_keys=2)
    assert page.keys == ["a", "b"] and not page.is_truncated


def test_max_keys_zero_is_an_empty_page() -> None:
    page = paginate(["a"], max_keys=0)
    assert page.entries == () and not page.is_truncated


@pytest.mark.parametrize(
    ("text", "expected"), [(None, 1000), ("0", 0), ("7", 7), ("1000", 1000), ("5000", 1000)]
)
def test_max_keys_default_and_cap(text: str | None, expected: int) -> None:
    assert parse_max_keys(text) == expected


@pytest.mark.parametrize("text", ["-1", "abc", "", "1.5"])
def test_max_keys_not_a_number_is_invalid_argument(text: str) -> None:
    with pytest.raises(S3Error) as info:
        parse_max_keys(text)
    assert info.value.code == "InvalidArgument" and info.value.status == 400


def test_token_round_trip_and_garbage() -> None:
    """A continuation token names the last entry; anything else is InvalidArgument."""
    for last in ["company_1/plant_1/é.jpg", "a/", "x" * 1024]:
        assert decode_token(encode_token(last)) == last
    for garbage in ["", "not-base64!!", "YWJj", "\u00e9"]:
        with pytest.raises(S3Error) as info:
            decode_token(garbage)
        assert info.value.code == "InvalidArgument"


names = st.text(alphabet="ab/-.é\U0001f331", min_size=1, max_size=6).filter(
    lambda k: "//" not in k and not k.startswith("/") and not k.endswith("/")
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(names, max_size=25, unique=True),
    prefix=st.sampled_from(["", "a", "a/", "b/a", "é"]),
    delimiter=st.sampled_from(["", "/", "a", "-"]),
    after=st.none() | names,
    max_keys=st.integers(min_value=1, max_value=4),
)
def test_pages_concatenate_to_the_model(
    keys: list[str], prefix: str, delimiter: str, after: str | None, max_keys: int
) -> None:
    """Following pages from their last entry yields exactly the model's listing, once."""
    expected = model(keys, prefix, delimiter, after)
    got: list[tuple[str, bool]] = []
    start = after
    for _ in range(len(keys) + 2):
        page = paginate(
            sorted(keys), prefix=prefix, delimiter=delimiter, after=start, max_keys=max_keys
        )
        got.extend(entries(page.entries))
        assert len(page.entries) <= max_keys
        if not page.is_truncated:
            break
        start = page.last
    assert got == expected


segment = st.text(alphabet="ab-.é\U0001f331", min_size=1, max_size=3).filter(
    lambda s: s not in (".", "..")
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra=st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), max_size=12),
    delimiter=st.sampled_from(["", "/", "-"]),
    prefix=st.sampled_from(["", "b", "b/", "company_1/plant_1"]),
    max_keys=st.integers(min_value=1, max_value=3),
)
def test_walk_with_pruning_matches_model(
    tmp_path_factory: pytest.TempPathFactory,
    extra: list[str],
    delimiter: str,
    prefix: str,
    max_keys: int,
) -> None:
    """The pruned folder walk pages exactly like the model, for files planted on disk."""
    root = tmp_path_factory.mktemp("walk")
    candidates = sorted(set(TRICKY + extra))
    # A key cannot also be a folder of other keys: keep the first of each clash.
    kept: list[str] = []
    for key in candidates:
        if not any(key.startswith(k + "/") or k.startswith(key + "/") for k in kept):
            kept.append(key)
    plant(root, kept)
    expected = model(kept, prefix, delimiter, None)
    got: list[tuple[str, bool]] = []
    start: str | None = None
    while True:
        walked, walker = walk_keys(root, prefix, start)
        page = paginate(
            walked,
            prefix=prefix,
            delimiter=delimiter,
            after=start,
            max_keys=max_keys,
            walker=walker,
        )
        got.extend(entries(page.entries))
        if not page.is_truncated:
            break
        start = page.last
    assert got == expected


def test_big_listing_default_cap() -> None:
    keys = [f"k{i:05d}" for i in range(2500)]
    page = paginate(keys)
    assert len(page.entries) == MAX_KEYS and page.last == "k00999" and page.is_truncated
