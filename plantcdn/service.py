"""The running daemon: storage folders, one listening service per ``--listen``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.server import Site

from plantcdn.config import Config
from plantcdn.connections import configure_site, raise_fd_limit
from plantcdn.edgelane import EdgeLane
from plantcdn.ops import Ops, OpsSite
from plantcdn.request import PlantRequest
from plantcdn.s3app import S3App
from plantcdn.scopes import reload_on_sighup
from plantcdn.storage import Storage
from plantcdn.uploads import UploadStore

__all__ = ["CredentialReloadService", "ListeningService", "PlantCDNService", "make_site"]

log = Logger()


def make_site(
    config: Config, storage: Storage, clock: IReactorTime, ops: Ops | None = None
) -> Site:
    """The web site: Klein app, no form parsing (bodies are streamed, never parsed whole);
    every request counted and access-logged by *ops* (see plantcdn.ops)."""
    ops = ops if ops is not None else Ops(storage, clock)
    app = S3App(config, storage, clock=clock, ops=ops)
    site = OpsSite(app.resource(), ops=ops, parsePOSTFormSubmission=False)
    site.requestFactory = PlantRequest
    site.body_router = app.body_router  # type: ignore[attr-defined]  # see plantcdn.request
    # SIGHUP re-reads PLANTCDN_CREDENTIALS_FILE (see CredentialReloadService, plantcdn.scopes)
    site.reload_credentials = app.services.verifier.reload  # type: ignore[attr-defined]
    # Plain GETs of small objects /cdn holds in memory skip twisted.web (plantcdn.edgelane).
    site.edge_lane = EdgeLane(app.cdn, ops)  # type: ignore[attr-defined]
    site.displayTracebacks = False
    site.noisy = False
    configure_site(
        site, header_timeout=config.header_timeout, body_idle_timeout=config.body_idle_timeout
    )
    return site


class ListeningService(Service):
    """Listens on one endpoint and says where, so scripts and tests can find the port."""

    def __init__(self, endpoint: IStreamServerEndpoint, description: str, site: Site) -> None:
        self.endpoint = endpoint
        self.description = description
        self.site = site
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        d: Deferred[IListeningPort] = self.endpoint.listen(self.site)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address: Any = port.getHost()
        where = (
            f"http://{address.host}:{address.port}"
            if hasattr(address, "port")
            else str(address)
        )
        log.info("plantcdn listening on {where} ({description})", where=where,
                 description=self.description)

    def _failed(self, failure: Any) -> None:
        log.critical("cannot listen on {description}: {error}", description=self.description,
                     error=failure.getErrorMessage())
        from twisted.internet import reactor

        reactor.stop()  # type: ignore[attr-defined]

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()  # type: ignore[return-value]
        return None


class CredentialReloadService(Service):
    """Re-reads the scoped credentials file on SIGHUP while the service runs."""

    def __init__(self, reload: Callable[[], object], reactor: Any) -> None:
        self.reload = reload
        self.reactor = reactor
        self._restore: Callable[[], None] | None = None

    def startService(self) -> None:
        super().startService()
        self._restore = reload_on_sighup(self.reload, self.reactor)

    def stopService(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None
        super().stopService()


class PlantCDNService(MultiService):
    """Prepares the storage folders, then starts the listeners."""

    def __init__(self, config: Config, storage: Storage) -> None:
        super().__init__()
        self.config = config
        self.storage = storage

    def privilegedStartService(self) -> None:
        before, after = raise_fd_limit()
        if after != before:
            log.info("raised the open-file limit from {before} to {after}", before=before,
                     after=after)
        removed = self.storage.prepare()
        if removed:
            log.info("removed {count} unfinished upload(s) left by a previous run",
                     count=len(removed))
        uploads = UploadStore(fsync=self.storage.fsync, reaper=self.storage.reaper)
        swept = sum(uploads.sweep_removed(bucket) for bucket in self.storage.buckets.values())
        if swept:
            log.info("removing {count} multipart upload(s) a previous run had begun to remove",
                     count=swept)
        for bucket in self.storage.buckets.values():
            log.info("bucket {bucket} is stored in {folder}", bucket=bucket.name,
                     folder=str(bucket.root))
        super().privilegedStartService()
