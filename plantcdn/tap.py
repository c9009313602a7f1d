"""``twistd plantcdn``: command-line options and the service they build.

The environment (and ``.env``) is read once, here; everything below gets a
frozen :class:`~plantcdn.config.Config`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from plantcdn.config import Config, ConfigError, environ_with_dotenv
from plantcdn.credentials import DEV_ACCESS_KEY_ID
from plantcdn.ops import OPS_OPT_PARAMETERS, DrainService, Ops, resolve_ops_options
from plantcdn.service import (
    CredentialReloadService,
    ListeningService,
    PlantCDNService,
    make_site,
)
from plantcdn.storage import Storage
from plantcdn.workers import WorkerPool, parse_workers

__all__ = [
    "DEFAULT_BACKLOG",
    "Options",
    "is_loopback_endpoint",
    "makeService",
    "with_default_backlog",
]

log = Logger()


def _endpoint_args(description: str) -> list[str]:
    """Split an endpoint string on unescaped ``:`` and drop the ``\\`` escapes,
    as Twisted's endpoint parser does (``tcp6:8001:interface=\\:\\:1``)."""
    args: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            args.append("".join(current))
            current = []
        else:
            current.append(char)
    args.append("".join(current))
    return args


def _is_loopback_host(host: str) -> bool:
    """An IP literal in 127.0.0.0/8 or ``::1``, or the name ``localhost`` itself:
    any other name may resolve to a public address."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def is_loopback_endpoint(description: str) -> bool:
    """Whether an endpoint string can only be reached from this machine.

    ``unix:`` sockets are local; ``tcp``/``tcp6``/``ssl`` are loopback only
    with an explicit loopback ``interface``; anything else (``systemd:``,
    a bare ``tcp:8001``) may face the network.
    """
    kind, *args = _endpoint_args(description)
    kind = kind.strip().lower()
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name.strip() == "interface":
            return _is_loopback_host(value.strip())
    return False


#: Listen backlog when an endpoint string names none. Twisted's default is 50:
#: a burst of connections larger than that (a load test, a page of thumbnails
#: through a proxy) overflowed the accept queue, and the dropped SYNs came back
#: only after the kernel's 1 s, 3 s... retransmits. nginx and Node use 511,
#: gunicorn and uvicorn 2048; Linux caps it at ``net.core.somaxconn``.
DEFAULT_BACKLOG = 1024


def with_default_backlog(description: str) -> str:
    """*description* with ``backlog=DEFAULT_BACKLOG`` added where Twisted takes a
    backlog (``tcp``, ``tcp6``, ``ssl``, ``unix``) and none is given."""
    kind, *args = _endpoint_args(description)
    if kind.strip().lower() not in ("tcp", "tcp6", "ssl", "unix"):
        return description
    if any(arg.partition("=")[0].strip() == "backlog" for arg in args):
        return description
    return f"{description}:backlog={DEFAULT_BACKLOG}"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run plantcdn: a local stand-in for AWS S3 (PutObject, presigned POST) and "
        "CloudFront (/cdn) storing objects as plain files."
    )
    optParameters = [
        ["data-dir", "d", None, "Folder that holds s3_inbox/ and s3_longterm/ [default: .]"],
        *OPS_OPT_PARAMETERS,
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self["listen"] = []
        self["workers"] = 1
        self._environ = environ

    def opt_listen(self, description: str) -> None:
        """Endpoint to listen on (repeatable) [default: tcp:$PORT:interface=127.0.0.1]."""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_workers(self, value: str) -> None:
        """Reactor processes sharing the listening sockets: a number or 'auto' (one per
        core) [default: 1]."""
        try:
            self["workers"] = parse_workers(value)
        except ValueError as exc:
            raise usage.UsageError(str(exc) or f"invalid --workers {value!r}") from None

    def postOptions(self) -> None:
        data_dir = Path(self["data-dir"] or os.getcwd())
        if not data_dir.is_dir():
            raise usage.UsageError(f"--data-dir {data_dir} is not a folder")
        environ = self._environ if self._environ is not None else os.environ
        merged = environ_with_dotenv(environ, Path.cwd() / ".env")
        try:
            config = Config.from_environ(merged, data_dir=data_dir)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        resolve_ops_options(self, merged)
        if not self["listen"]:
            self["listen"] = [f"tcp:{config.port}:interface=127.0.0.1"]
        from twisted.internet import reactor

        for description in self["listen"]:
            try:
                serverFromString(reactor, description)
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise usage.UsageError(f"invalid --listen {description!r}: {exc}") from None
        if config.using_dev_credentials:
            exposed = [d for d in self["listen"] if not is_loopback_endpoint(d)]
            if exposed:
                raise usage.UsageError(
                    "refusing to listen on a non-loopback interface "
                    f"({', '.join(exposed)}) with the public development key pair "
                    f"{DEV_ACCESS_KEY_ID}: set AWS_S3_ACCESS_KEY_ID and "
                    "AWS_S3_SECRET_ACCESS_KEY"
                )
        self["config"] = config
        self["environ"] = merged


def makeService(options: Mapping[str, Any]) -> IService:
    """Build the service tree from parsed options."""
    from twisted.internet import reactor

    config: Config = options["config"]
    if config.using_dev_credentials:
        log.warn(
            "no credentials configured: using the development key pair "
            "{access_key_id} (see README); never expose this server",
            access_key_id=DEV_ACCESS_KEY_ID,
        )
    storage = Storage(config)
    service = PlantCDNService(config, storage)
    ops = Ops(storage, reactor)  # type: ignore[arg-type]
    site = make_site(config, storage, reactor, ops)  # type: ignore[arg-type]
    DrainService(ops, options.get("shutdown-grace", 10.0)).setServiceParent(service)
    reload_credentials = site.reload_credentials  # type: ignore[attr-defined]
    CredentialReloadService(reload_credentials, reactor).setServiceParent(service)
    listeners = []
    for description in options["listen"]:
        endpoint = serverFromString(reactor, with_default_backlog(description))
        listener = ListeningService(endpoint, description, site)
        listener.setServiceParent(service)
        listeners.append(listener)
    workers = options.get("workers", 1)
    if workers > 1:
        WorkerPool(
            workers, listeners, options.get("environ", os.environ), str(config.data_dir), reactor
        ).setServiceParent(service)
    return service
