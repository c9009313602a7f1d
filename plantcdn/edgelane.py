"""The edge's fast lane: a plain GET of a small object it holds, answered in one step.

A CloudFront edge answers a cache hit without going back to its origin's
machinery; so does plantcdn.  When a connection that is between requests
receives exactly one plain ``GET`` head under ``/cdn/`` (see
:mod:`plantcdn.plainget`) for an object whose body ``/cdn`` holds in memory
and whose file is still that version, :class:`EdgeLane` writes the answer
straight to the transport: no ``twisted.web`` request, no resource lookup,
no header objects.  The bytes are the ones the full path writes (the tests
compare them header for header), and the request is counted and access-logged
the same way (:meth:`plantcdn.ops.Ops.account`).

Everything else -- a miss, a large object, a conditional, a range, CORS, a
signed distribution, a pipelined or partial head, a server shutting down --
returns ``False`` and takes the full path, untouched.
"""

from __future__ import annotations

from typing import Any

from plantcdn.cdn import CdnResource
from plantcdn.ops import Ops, default_operation
from plantcdn.plainget import plain_get_target

__all__ = ["EdgeLane"]


class EdgeLane:
    """``lane(channel, data)``: answer *data* on *channel* if it is a plain cached GET."""

    def __init__(self, cdn: CdnResource, ops: Ops) -> None:
        self.cdn = cdn
        self.ops = ops

    def __call__(self, channel: Any, data: bytes) -> bool:
        target = plain_get_target(data, self.cdn.mount)
        if target is None or self.ops.draining:
            return False
        started = self.ops.clock.seconds()
        answer = self.cdn.plain_response(target)
        if answer is None:
            return False
        head, body = answer
        transport = channel.transport
        transport.writeSequence((head, body))
        address = transport.getPeer()
        self.ops.account(
            method=b"GET",
            path=target,
            operation=default_operation(target),
            status=200,
            error_code=None,
            started=started,
            bytes_in=0,
            bytes_out=len(body),
            client=str(getattr(address, "host", None) or address or "-"),
        )
        return True
