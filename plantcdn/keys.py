"""Object key rules: what a key may look like, and the multi-tenant layout.

S3 itself accepts almost any UTF-8 key.  plantcdn stores keys as paths on
disk, so it refuses the keys that could not map one-to-one onto a file below
the bucket folder, and it enforces Plant-DB's tenant layout
``company_<id>/plant_<id>/<rest>`` on every write.
"""

from __future__ import annotations

import functools
import re

from attrs import frozen

from plantcdn.errors import S3Error

__all__ = ["MAX_KEY_BYTES", "TenantKey", "check_key_syntax", "check_tenant_key", "is_storable_key"]

#: "The name for a key is a sequence of Unicode characters whose UTF-8
#: encoding is at most 1,024 bytes long." (S3 User Guide, "Naming objects").
MAX_KEY_BYTES = 1024

#: Reserved for plantcdn's own files at the root of each bucket folder.
INTERNAL_PREFIX = ".plantcdn"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@frozen
class TenantKey:
    """A key that obeys the tenant layout, split into its parts."""

    company: str
    plant: str
    rest: str


def check_key_syntax(key: str) -> None:
    """Refuse keys that cannot be stored as a plain file below the bucket folder."""
    if key == "":
        raise S3Error("InvalidArgument", "Object key must not be empty", extra=_arg("key", key))
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error(
            "KeyTooLongError",
            extra={"MaxSizeAllowed": str(MAX_KEY_BYTES), "Size": str(len(key.encode("utf-8")))},
        )
    if _CONTROL.search(key):
        raise S3Error(
            "InvalidArgument",
            "Object key must not contain NUL or control characters",
            extra=_arg("key", key.encode("unicode_escape").decode("ascii")),
        )
    if "\\" in key:
        raise S3Error(
            "InvalidArgument", "Object key must not contain backslashes", extra=_arg("key", key)
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise S3Error("InvalidArgument", "Object key is not valid UTF-8") from None
    for segment in key.split("/"):
        if segment == "":
            raise S3Error(
                "InvalidArgument",
                "Object key must not contain empty path segments (leading, trailing or "
                "double slashes)",
                extra=_arg("key", key),
            )
        if segment in (".", ".."):
            raise S3Error(
                "InvalidArgument",
                "Object key must not contain '.' or '..' path segments",
                extra=_arg("key", key),
            )


def check_tenant_key(key: str, id_pattern: str) -> TenantKey:
    """Refuse a write outside ``company_<id>/plant_<id>/<rest>``.

    Syntax errors (400) are reported before layout errors (403), so a key
    that is both malformed and outside the layout gets the 400.
    """
    check_key_syntax(key)
    match = _layout(id_pattern).fullmatch(key)
    if match is None:
        raise S3Error(
            "AccessDenied",
            "Access Denied: object keys must follow the tenant layout "
            "company_<id>/plant_<id>/<name>",
        )
    return TenantKey(match["company"], match["plant"], match["rest"])


def is_storable_key(key: str, id_pattern: str) -> bool:
    """Whether *key* could name an object at all (reads of anything else are NoSuchKey)."""
    try:
        check_tenant_key(key, id_pattern)
    except S3Error:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _layout(id_pattern: str) -> re.Pattern[str]:
    return re.compile(
        rf"company_(?P<company>(?:{id_pattern}))/plant_(?P<plant>(?:{id_pattern}))/(?P<rest>.+)",
        re.DOTALL,
    )


def _arg(name: str, value: str) -> dict[str, str]:
    return {"ArgumentName": name, "ArgumentValue": value}
