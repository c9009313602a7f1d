"""What one S3 request handler is given: the shared services and the parsed call."""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote_plus

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from plantcdn.config import Config
from plantcdn.routing import Target
from plantcdn.sigv4 import AuthResult, RequestParts
from plantcdn.storage import Bucket, Storage
from plantcdn.verification import Verifier

__all__ = ["Handler", "S3Call", "Services", "new_request_ids"]


@define
class Services:
    """Long-lived collaborators shared by every handler (time and cooperator injected)."""

    config: Config
    storage: Storage
    verifier: Verifier
    clock: IReactorTime
    cooperator: Cooperator

    def bucket(self, call: S3Call) -> Bucket:
        """The bucket *call* addresses (404 NoSuchBucket when it is not one of ours)."""
        assert call.target.bucket is not None
        return self.storage.bucket(call.target.bucket)


@define
class S3Call:
    """One parsed S3 request."""

    request: IRequest
    target: Target
    operation: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]  # decoded, first value of each name
    parts: RequestParts
    request_id: str
    now: float
    auth: AuthResult | None = field(default=None)

    @property
    def method(self) -> str:
        return self.parts.method

    @property
    def key(self) -> str:
        """The object key (for operations the router only picks when there is one)."""
        assert self.target.key is not None
        return self.target.key

    def set_header(self, name: str, value: str) -> None:
        self.request.setHeader(name.encode("latin-1"), value.encode("latin-1", "replace"))


Result = bytes | IResource | None
Handler = Callable[[Services, S3Call], Awaitable[Result]]


def new_request_ids() -> tuple[str, str]:
    """``x-amz-request-id`` and ``x-amz-id-2`` values shaped like AWS's."""
    return os.urandom(8).hex().upper(), base64.b64encode(os.urandom(48)).decode("ascii")


def parse_query(raw: str) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """The raw query pairs (for signing) and a decoded first-value dict (for handlers)."""
    pairs: list[tuple[str, str]] = []
    decoded: dict[str, str] = {}
    if raw:
        for piece in raw.split("&"):
            if piece == "":
                continue
            name, _, value = piece.partition("=")
            pairs.append((name, value))
            dname = unquote_plus(name, errors="replace")
            decoded.setdefault(dname, unquote_plus(value, errors="replace"))
    return tuple(pairs), decoded
