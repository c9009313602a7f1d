"""ListObjects(V2), ListBuckets, HeadBucket, GetBucketLocation, DeleteObject(s), CopyObject, tagging and ACL calls."""

from __future__ import annotations

from plantcdn.call import Handler

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {}
