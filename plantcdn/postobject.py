"""POST Object: browser uploads with a presigned POST policy."""

from __future__ import annotations

from plantcdn.call import Handler

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {}
