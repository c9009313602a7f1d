"""Bucket CORS: configuration, preflight and response headers."""

from __future__ import annotations

from plantcdn.call import Handler

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {}
