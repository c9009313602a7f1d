"""Conditional and range requests, as S3 GetObject and CloudFront evaluate them.

Pure functions shared by GetObject/HeadObject and ``/cdn``.  Precedence
follows the GetObject API reference: when If-Match is true, a false
If-Unmodified-Since is ignored (200); when If-None-Match is false, a true
If-Modified-Since is ignored (304).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping

from plantcdn.errors import S3Error

__all__ = ["NOT_MODIFIED", "byte_ranges", "etag_matches", "evaluate_preconditions", "parse_range"]

NOT_MODIFIED = 304

_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _strip(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names *etag* (or is ``*``)."""
    wanted = _strip(etag)
    return any(t.strip() == "*" or _strip(t) == wanted for t in header.split(","))


def evaluate_preconditions(
    headers: Mapping[str, str], etag: str, last_modified: float, *, now: float
) -> int | None:
    """``None`` to go on, ``NOT_MODIFIED`` for a 304; a failed precondition raises 412.

    *headers* are lower-case names.  HTTP dates have one-second resolution,
    so *last_modified* is compared in whole seconds.
    """
    modified = int(last_modified)
    if_match = headers.get("if-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Match"})
    else:
        since = _http_date(headers.get("if-unmodified-since"))
        if since is not None and modified > since:
            raise S3Error("PreconditionFailed", extra={"Condition": "If-Unmodified-Since"})
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            return NOT_MODIFIED
    else:
        since = _http_date(headers.get("if-modified-since"))
        if since is not None and since <= now and modified <= since:
            return NOT_MODIFIED
    return None


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks for, or None for the whole object.

    Syntax S3 does not understand (several ranges, other units) is ignored,
    as S3 does; a well-formed but unsatisfiable range raises 416 InvalidRange.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = _offset(last)
        if length == 0 or size == 0:
            raise _invalid_range(header, size)
        return max(0, size - length), size - 1
    start = _offset(first)
    end = _offset(last) if last != "" else size - 1
    if last != "" and end < start:
        return None
    if start >= size:
        raise _invalid_range(header, size)
    return start, min(end, size - 1)


def byte_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The inclusive byte ranges a ``Range`` header with a list asks for; None: the whole object.

    CloudFront "generally follows the RFC specifications for the Range
    header" but serves the whole object with 200 unless the ranges are in
    ascending order, do not overlap and are all valid ("How CloudFront
    processes partial requests for an object (range GETs)").  Of valid ranges,
    those that start past the end are dropped (RFC 9110 section 14.1.1); if
    none is left, 416 InvalidRange as for one range.  Empty list elements are
    allowed (RFC 9110 section 5.6.1).  Headers without a comma never come
    here: one range keeps :func:`parse_range`'s rules.
    """
    unit = _UNIT.match(header)
    if unit is None:
        return None
    wanted: list[tuple[int, int]] = []
    for spec in header[unit.end():].split(","):
        spec = spec.strip(" \t")
        if not spec:
            continue
        matched = _RANGE_SPEC.fullmatch(spec)
        if matched is None:
            return None
        first_text, last_text = matched.groups()
        if first_text:
            first = _offset(first_text)
            last = _offset(last_text) if last_text else _BEYOND
            if last < first:
                return None
        elif last_text:  # a suffix: the last N bytes
            first, last = max(0, size - _offset(last_text)), size - 1
            if last < first:  # "-0", or an empty object: nothing to send
                first, last = _BEYOND, _BEYOND
        else:
            return None
        if wanted and first <= wanted[-1][1]:
            return None  # descending or overlapping: the whole object
        wanted.append((first, last))
    if not wanted:
        return None
    satisfiable = [(first, min(last, size - 1)) for first, last in wanted if first < size]
    if not satisfiable:
        raise _invalid_range(header, size)
    return satisfiable


_RANGE_SPEC = re.compile(r"(\d*)[ \t]*-[ \t]*(\d*)")
_UNIT = re.compile(r"[ \t]*bytes[ \t]*=")


def _offset(digits: str) -> int:
    """A byte offset; beyond any file's size when longer than 18 digits (Python refuses
    to convert more than 4,300 digits, which made such a header a 500)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _BEYOND


_BEYOND = 1 << 63


def _invalid_range(header: str, size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        extra={"RangeRequested": header.strip(), "ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )
