"""Multipart uploads: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads."""

from __future__ import annotations

from plantcdn.call import Handler

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {}
