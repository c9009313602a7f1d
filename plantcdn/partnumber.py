"""``GET``/``HEAD ?partNumber=N``: the bytes of one part of an object.

S3 answers such a read as a ranged one (206 with ``Content-Range``) over the
span the part occupies in the completed object, and sends
``x-amz-mp-parts-count``. An object that was not uploaded in parts has one
part, the whole object. The part sizes are kept in the object's metadata at
CompleteMultipartUpload as runs of equal sizes (``[[8388608, 11], [5, 1]]``),
which stays small for the usual uniform parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from plantcdn.errors import S3Error
from plantcdn.uploads import MAX_PART_NUMBER

__all__ = ["part_runs", "part_span"]


def part_runs(sizes: Iterable[int]) -> list[list[int]]:
    """*sizes* in order as ``[size, count]`` runs of equal sizes."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return runs


def part_span(
    value: str, size: int, runs: Sequence[Sequence[int]] | None, parts_count: int | None
) -> tuple[int, int]:
    """``(offset, length)`` of part *value* of an object of *size* bytes (the length
    is 0 for an empty part).

    *runs* are the stored part sizes (None: not a multipart object, or one
    completed before they were kept; then only a single part can be placed).
    """
    if not (value.isascii() and value.isdigit() and len(value) <= 5) or not (
        1 <= int(value) <= MAX_PART_NUMBER
    ):
        raise S3Error(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": value},
        )
    number = int(value)
    if runs is None:
        if (parts_count or 1) != 1:
            raise S3Error(
                "NotImplemented",
                "This object was completed before plantcdn kept its part sizes",
                extra={"Header": "partNumber"},
            )
        runs = [[size, 1]]
    start = 0
    for part_size, count in runs:
        if number <= count:
            return start + (number - 1) * part_size, part_size
        number -= count
        start += part_size * count
    raise S3Error("InvalidPartNumber", headers={"Content-Range": f"bytes */{size}"})
