"""Operating plantcdn: health, Prometheus metrics, per-request accounting, graceful drain.

Everything here is mounted below the reserved prefix ``/_plantcdn/``; an S3
bucket name may contain only lower-case letters, digits, dots and hyphens
(S3 User Guide, "Bucket naming rules"), so that prefix can never address a
bucket.

Per-request work is O(1): the request object counts bytes and takes two clock
readings; labels come from small fixed sets (S3 operation names, status codes,
S3 error codes).  Objects and bytes per bucket are the one thing that needs
the disk: they are counted by a walk that runs in a thread at scrape time, at
most once per ``min_interval`` seconds, stops after ``scan_limit`` entries and
is reused until a write happens or it is ``max_age`` seconds old.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from plantcdn import __version__
from plantcdn.accesslog import log_access, safe_path, use_json_target, use_text_target
from plantcdn.keys import INTERNAL_PREFIX
from plantcdn.storage import Storage

__all__ = [
    "OPS_PREFIX",
    "DrainService",
    "Ops",
    "OpsRequest",
    "OpsRequestMixin",
    "OpsSite",
    "StorageSnapshot",
    "annotate",
    "resolve_ops_options",
    "scan_bucket",
    "with_accounting",
]

log = Logger()

OPS_PREFIX = "/_plantcdn/"
DEFAULT_SHUTDOWN_GRACE = 10.0
DEFAULT_SCAN_LIMIT = 200_000
DRAIN_POLL = 0.05
#: Seconds past the grace allowed for flushing answers and closing connections.
DRAIN_FLUSH_LIMIT = 2.0

#: S3 error codes that mean "your signature or credentials were refused".
SIGNATURE_CODES = frozenset(
    {
        "SignatureDoesNotMatch", "InvalidAccessKeyId", "IncompleteSignature",
        "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError",
        "RequestTimeTooSkewed", "MissingSecurityHeader", "ExpiredToken", "InvalidToken",
    }
)  # fmt: skip
#: Operations whose duration is also an upload duration.
UPLOAD_OPERATIONS = frozenset({"PutObject", "PostObject", "UploadPart"})
WRITE_METHODS = frozenset({b"PUT", b"POST", b"DELETE"})
#: Status recorded for a request whose client went away before the answer (as nginx does).
CLIENT_GONE = 499

REQUEST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
UPLOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def annotate(
    request: IRequest, *, operation: str | None = None, error_code: str | None = None
) -> None:
    """Tell the accounting what a request was (its S3 operation) and how it was refused.

    Called by the S3 routes; any request object accepts the attributes, so this
    also works under ``StubTreq`` where the request is not an :class:`OpsRequest`.
    """
    if operation is not None:
        request.plantcdn_operation = operation  # type: ignore[attr-defined]
    if error_code is not None:
        request.plantcdn_error_code = error_code  # type: ignore[attr-defined]


def default_operation(path: bytes) -> str:
    """The label of a request no S3 route annotated (the CDN, ops, unparseable requests)."""
    if path.startswith(OPS_PREFIX.encode()):
        return "PlantcdnOps"
    if path.startswith(b"/cdn/") or path == b"/cdn":
        return "CdnGet"
    return "Unknown"


# -- storage statistics ---------------------------------------------------------


@frozen
class BucketStats:
    objects: int
    bytes: int
    truncated: bool


@frozen
class StorageSnapshot:
    """Objects and bytes per bucket at ``taken`` (reactor time)."""

    taken: float
    buckets: Mapping[str, BucketStats]


def scan_bucket(root: Path, limit: int = DEFAULT_SCAN_LIMIT) -> BucketStats:
    """Count the objects below a bucket folder, skipping plantcdn's own files.

    Stops after *limit* directory entries so that a huge bucket can never make
    a scrape slow; ``truncated`` then says the counts are a lower bound.
    """
    objects = total = seen = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > limit:
                    return BucketStats(objects, total, True)
                if folder == root and entry.name.startswith((INTERNAL_PREFIX, ".")):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                        objects += 1
                except OSError:
                    continue
    return BucketStats(objects, total, False)


class StorageStats:
    """Cached, bounded per-bucket counts (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        clock: IReactorTime,
        *,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        max_age: float = 60.0,
        min_interval: float = 1.0,
    ) -> None:
        self.storage = storage
        self.clock: Any = clock  # IReactorTime (Any: zope methods confuse mypy)
        self.scan_limit = scan_limit
        self.max_age = max_age
        self.min_interval = min_interval
        self.snapshot: StorageSnapshot | None = None
        self.dirty = True
        self._running: Deferred[Any] | None = None

    def mark_dirty(self) -> None:
        """A write happened: the next scrape (after ``min_interval``) counts again."""
        self.dirty = True

    def _due(self) -> bool:
        if self.snapshot is None:
            return True
        age = self.clock.seconds() - self.snapshot.taken
        return age >= self.max_age or (self.dirty and age >= self.min_interval)

    def _scan(self) -> dict[str, BucketStats]:
        return {
            name: scan_bucket(bucket.root, self.scan_limit)
            for name, bucket in self.storage.buckets.items()
        }

    def refresh(self) -> Deferred[StorageSnapshot | None]:
        """The current snapshot, rescanned first if it is due; one scan at a time."""
        if not self._due():
            return succeed(self.snapshot)
        if self._running is None:
            self.dirty = False
            clock: Any = self.clock
            if IReactorThreads.providedBy(clock):
                d = deferToThreadPool(clock, clock.getThreadPool(), self._scan)
            else:
                d = maybeDeferred(self._scan)
            self._running = d

            def finished(result: Any) -> None:
                self._running = None
                if isinstance(result, Failure):
                    log.failure("cannot count the objects in the buckets", result)
                else:
                    self.snapshot = StorageSnapshot(self.clock.seconds(), result)

            d.addBoth(finished)
        running = self._running
        if running is None:  # the scan ran synchronously
            return succeed(self.snapshot)
        waiter: Deferred[StorageSnapshot | None] = Deferred()
        running.addBoth(lambda _: waiter.callback(self.snapshot))
        return waiter


class _StorageCollector:
    """Exposes the latest :class:`StorageSnapshot` and free disk space."""

    def __init__(self, stats: StorageStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "plantcdn_bucket_objects", "Objects stored per bucket (last scan)", labels=["bucket"]
        )
        size = GaugeMetricFamily(
            "plantcdn_bucket_bytes", "Bytes stored per bucket (last scan)", labels=["bucket"]
        )
        truncated = GaugeMetricFamily(
            "plantcdn_bucket_scan_truncated",
            "1 when the last scan stopped at its entry limit (counts are a lower bound)",
            labels=["bucket"],
        )
        free = GaugeMetricFamily(
            "plantcdn_storage_free_bytes", "Free disk space under each bucket folder",
            labels=["bucket"],
        )
        snapshot = self.stats.snapshot
        if snapshot is not None:
            for name, stats in snapshot.buckets.items():
                objects.add_metric([name], stats.objects)
                size.add_metric([name], stats.bytes)
                truncated.add_metric([name], 1 if stats.truncated else 0)
        for name, bucket in self.stats.storage.buckets.items():
            with contextlib.suppress(OSError):
                free.add_metric([name], shutil.disk_usage(bucket.root).free)
        yield from (objects, size, truncated, free)
        if snapshot is not None:
            age = GaugeMetricFamily(
                "plantcdn_bucket_scan_age_seconds", "Seconds since the per-bucket counts were taken"
            )
            age.add_metric([], max(0.0, self.stats.clock.seconds() - snapshot.taken))
            yield age


# -- the accounting -------------------------------------------------------------


class Metrics:
    """The Prometheus instruments, on a registry of their own (no global state)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "plantcdn_requests", "Requests by S3 operation and HTTP status",
            ["operation", "status"], registry=registry,
        )
        self.errors = Counter(
            "plantcdn_s3_errors", "S3 error responses by error Code", ["code"], registry=registry
        )
        self.signatures_rejected = Counter(
            "plantcdn_signatures_rejected", "Requests refused for their signature or credentials",
            ["code"], registry=registry,
        )
        self.bytes_in = Counter(
            "plantcdn_received_bytes", "Request body bytes received", ["operation"],
            registry=registry,
        )
        self.bytes_out = Counter(
            "plantcdn_sent_bytes", "Response body bytes sent", ["operation"], registry=registry
        )
        self.request_duration = Histogram(
            "plantcdn_request_duration_seconds", "From request line to last response byte",
            ["operation"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.upload_duration = Histogram(
            "plantcdn_upload_duration_seconds", "Duration of uploads (PutObject, PostObject, "
            "UploadPart), body receipt included", ["operation"], buckets=UPLOAD_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "plantcdn_requests_in_flight", "Requests being received or answered", registry=registry
        )
        self.uploads_in_flight = Gauge(
            "plantcdn_uploads_in_flight", "Requests with a body being received or answered",
            registry=registry,
        )
        info = Gauge("plantcdn_info", "plantcdn version", ["version"], registry=registry)
        info.labels(__version__).set(1)
        self.start_time = Gauge(
            "plantcdn_start_time_seconds", "When plantcdn started (Unix time)", registry=registry
        )  # fmt: skip


@frozen
class _Series:
    """The labelled metric children one (operation, status) pair updates."""

    requests: Any
    bytes_in: Any
    bytes_out: Any
    duration: Any
    upload_duration: Any

    @classmethod
    def of(cls, m: Metrics, operation: str, status: int) -> _Series:
        return cls(
            requests=m.requests.labels(operation, str(status)),
            bytes_in=m.bytes_in.labels(operation),
            bytes_out=m.bytes_out.labels(operation),
            duration=m.request_duration.labels(operation),
            upload_duration=(
                m.upload_duration.labels(operation) if operation in UPLOAD_OPERATIONS else None
            ),
        )


class Ops:
    """Health, metrics and the per-request accounting of one running plantcdn."""

    def __init__(
        self,
        storage: Storage,
        clock: IReactorTime,
        *,
        access_log: bool = True,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        scan_max_age: float = 60.0,
        scan_min_interval: float = 1.0,
        with_process_metrics: bool = True,
    ) -> None:
        self.storage = storage
        self.clock: Any = clock  # IReactorTime (Any: zope methods confuse mypy)
        self.access_log = access_log
        self.started: float = clock.seconds()  # type: ignore[misc]  # zope method, no mypy-zope
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry)
        self.metrics.start_time.set(self.started)
        self.stats = StorageStats(
            storage, clock, scan_limit=scan_limit, max_age=scan_max_age,
            min_interval=scan_min_interval,
        )
        self.registry.register(_StorageCollector(self.stats))  # type: ignore[arg-type]
        if with_process_metrics:
            ProcessCollector(registry=self.registry)
        self.in_flight: set[OpsRequest] = set()
        # Gauges read at scrape time, not kept up to date on every request.
        self.metrics.in_flight.set_function(lambda: len(self.in_flight))
        self.metrics.uploads_in_flight.set_function(
            lambda: sum(1 for r in list(self.in_flight) if r.plantcdn_upload)
        )
        # Labelled series by (operation, status), looked up once: prometheus_client's
        # labels() validates and locks on every call (3 us each, 4 per request).
        self._series: dict[tuple[str, int], _Series] = {}
        self.draining = False
        self.channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._resource: Any = None

    # -- per request (O(1)) ----------------------------------------------------

    def request_started(self, request: OpsRequest) -> None:
        self.in_flight.add(request)

    def request_done(self, request: OpsRequest, *, aborted: bool) -> None:
        """Count, time and log one request; called once, when it finished or was cut off."""
        self.in_flight.discard(request)
        path = request.path or b"-"
        ids = request.responseHeaders.getRawHeaders(b"x-amz-request-id") or [b"-"]
        self.account(
            method=request.method if request.path is not None else b"-",
            path=path,
            operation=getattr(request, "plantcdn_operation", None) or default_operation(path),
            status=CLIENT_GONE if aborted else int(request.code),
            error_code=getattr(request, "plantcdn_error_code", None),
            started=request.plantcdn_started,
            bytes_in=request.plantcdn_bytes_in,
            bytes_out=request.sentLength,
            client=_client(request),
            request_id=ids[0].decode("latin-1"),
            completed=not aborted,
        )

    def account(
        self,
        *,
        method: bytes,
        path: bytes,
        operation: str,
        status: int,
        error_code: str | None,
        started: float,
        bytes_in: int,
        bytes_out: int,
        client: str,
        request_id: str = "-",
        completed: bool = True,
    ) -> None:
        """The metrics and access line of one request, however it was answered."""
        duration = max(0.0, self.clock.seconds() - started)
        series = self._series.get((operation, status))
        if series is None:
            series = self._series[(operation, status)] = _Series.of(self.metrics, operation, status)
        series.requests.inc()
        if error_code is not None:
            m = self.metrics
            m.errors.labels(error_code).inc()
            if error_code in SIGNATURE_CODES:
                m.signatures_rejected.labels(error_code).inc()
        if bytes_in:
            series.bytes_in.inc(bytes_in)
        if bytes_out:
            series.bytes_out.inc(bytes_out)
        series.duration.observe(duration)
        if series.upload_duration is not None:
            series.upload_duration.observe(duration)
        if method in WRITE_METHODS and completed and status < 300:
            self.stats.mark_dirty()
        if self.access_log:
            log_access(
                client=client,
                method=method.decode("latin-1", "replace")[:16],
                path=safe_path(path),
                operation=operation,
                status=status,
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                duration_ms=duration * 1000.0,
                request_id=request_id,
                error_code=error_code,
            )

    # -- health and metrics ------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """The health document and its status (503 when storage cannot be written
        or the server is shutting down, so a load balancer stops sending)."""
        buckets: dict[str, Any] = {}
        for name, bucket in self.storage.buckets.items():
            free: int | None
            try:
                free = shutil.disk_usage(bucket.root).free
            except OSError:
                free = None
            buckets[name] = {"writable": _probe_writable(bucket.tmp_dir), "free_bytes": free}
        writable = all(b["writable"] for b in buckets.values())
        frees = [b["free_bytes"] for b in buckets.values() if b["free_bytes"] is not None]
        ok = writable and not self.draining
        document = {
            "status": "ok" if ok else ("draining" if self.draining else "unhealthy"),
            "version": __version__,
            "uptime_seconds": round(self.clock.seconds() - self.started, 3),
            "storage_writable": writable,
            "free_bytes": min(frees) if frees else None,
            "buckets": buckets,
        }
        return (200 if ok else 503), document

    async def metrics_text(self) -> bytes:
        await self.stats.refresh()
        return generate_latest(self.registry)

    def resource(self) -> IResource:
        """The ``/_plantcdn/`` tree."""
        if self._resource is None:
            root: Any = Resource()
            root.putChild(b"health", _HealthResource(self))
            root.putChild(b"metrics", _MetricsResource(self))
            self._resource = root
        return self._resource

    # -- graceful shutdown -----------------------------------------------------------

    def drain(self, grace: float) -> Deferred[None]:
        """Wait (at most *grace* seconds) for the requests in flight, cut off the rest,
        then close every connection once its answer is flushed.

        Cutting a connection makes Klein cancel its handler, and the upload
        writer then removes its temporary file: nothing half-written stays.
        Polls every ``DRAIN_POLL`` seconds, only while shutting down.
        """
        self.draining = True
        deadline = self.clock.seconds() + grace
        if self.in_flight:
            log.info("waiting up to {grace}s for {count} request(s) in flight", grace=grace,
                     count=len(self.in_flight))
        done: Deferred[None] = Deferred()
        cut = False

        def step() -> None:
            nonlocal cut
            now = self.clock.seconds()
            if self.in_flight and now < deadline:
                return again()
            if self.in_flight and not cut:
                cut = True
                log.warn("shutdown grace over: cutting off {count} request(s)",
                         count=len(self.in_flight))
                for request in list(self.in_flight):
                    transport: Any = getattr(request.channel, "transport", None)
                    if transport is not None:
                        transport.abortConnection()
                return again()
            still_open = [c for c in list(self.channels) if _connected(c)]
            if not still_open or now >= deadline + DRAIN_FLUSH_LIMIT:
                done.callback(None)
                return None
            for channel in still_open:
                channel.transport.loseConnection()  # after what is written is flushed
            return again()

        def again() -> None:
            self.clock.callLater(DRAIN_POLL, step)

        step()
        return done


def _connected(channel: Any) -> bool:
    transport = getattr(channel, "transport", None)
    return bool(transport is not None and getattr(transport, "connected", False)
                and not getattr(transport, "disconnected", False))


def _client(request: Request) -> str:
    address: Any = request.getClientAddress()
    return str(getattr(address, "host", None) or address or "-")


def _probe_writable(folder: Path) -> bool:
    """Really create and remove a file: ``os.access`` misses full disks and some mounts."""
    probe = folder / f"health-{uuid.uuid4().hex}.probe"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError:
        with contextlib.suppress(OSError):
            probe.unlink()
        return False
    return True


class _HealthResource(Resource):
    isLeaf = True

    def __init__(self, ops: Ops) -> None:
        super().__init__()
        self.ops = ops

    def render_GET(self, request: Request) -> bytes:
        status, document = self.ops.health()
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class _MetricsResource(Resource):
    isLeaf = True

    def __init__(self, ops: Ops) -> None:
        super().__init__()
        self.ops = ops

    def render_GET(self, request: Request) -> Any:
        d = Deferred.fromCoroutine(self.ops.metrics_text())

        def write(body: bytes) -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            request.setHeader(b"Cache-Control", b"no-store")
            request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
            request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("cannot render metrics", failure)
            if not request.finished and not getattr(request, "_disconnected", False):
                request.setResponseCode(500)
                request.finish()

        d.addCallbacks(write, failed)
        return NOT_DONE_YET


# -- the site and its requests -----------------------------------------------------


class OpsRequestMixin:
    """Makes a request report to :class:`Ops` when it starts, as its body arrives and
    exactly once when it ends (finished, or its connection lost).

    A mixin, so it composes with whatever request class the site is given
    (see :class:`OpsSite`)."""

    plantcdn_bytes_in = 0
    plantcdn_started = 0.0
    plantcdn_upload = False
    _plantcdn_ops: Ops | None = None

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)  # type: ignore[call-arg]
        ops: Ops | None = getattr(getattr(channel, "site", None), "ops", None)
        if ops is not None:
            self.plantcdn_started = ops.clock.seconds()

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)  # type: ignore[misc]
        me: Any = self
        ops: Ops | None = getattr(getattr(me.channel, "site", None), "ops", None)
        if ops is not None and self._plantcdn_ops is None:
            chunked = me.requestHeaders.getRawHeaders(b"transfer-encoding")
            self.plantcdn_upload = bool(length) or bool(chunked)
            self._plantcdn_ops = ops
            ops.request_started(me)

    def handleContentChunk(self, data: bytes) -> None:
        self.plantcdn_bytes_in += len(data)
        super().handleContentChunk(data)  # type: ignore[misc]

    def finish(self) -> Any:
        result = super().finish()  # type: ignore[misc]
        self._plantcdn_done(aborted=False)
        return result

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)  # type: ignore[misc]
        self._plantcdn_done(aborted=True)

    def _plantcdn_done(self, *, aborted: bool) -> None:
        ops, self._plantcdn_ops = self._plantcdn_ops, None
        if ops is not None:
            ops.request_done(self, aborted=aborted)  # type: ignore[arg-type]


class OpsRequest(OpsRequestMixin, Request):
    """A plain ``twisted.web.server.Request`` with the accounting."""


_ACCOUNTED: dict[type, type] = {Request: OpsRequest}


def with_accounting(factory: type) -> type:
    """*factory* (a request class) with :class:`OpsRequestMixin` mixed in, made once."""
    if issubclass(factory, OpsRequestMixin):
        return factory
    if factory not in _ACCOUNTED:
        _ACCOUNTED[factory] = type(f"Ops{factory.__name__}", (OpsRequestMixin, factory), {})
    return _ACCOUNTED[factory]


class OpsSite(Site):
    """A ``Site`` whose requests are counted and logged by :class:`Ops`.

    Any request class assigned to ``requestFactory`` gets the accounting mixed
    in, so another part of plantcdn may choose its own request class.
    Twisted's own access log is switched off: it would write presigned URLs,
    signatures included, verbatim.
    """

    _ops_request_factory: type = OpsRequest

    def __init__(self, resource: IResource, *, ops: Ops, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.ops = ops

    @property  # type: ignore[override]
    def requestFactory(self) -> type:
        return self._ops_request_factory

    @requestFactory.setter
    def requestFactory(self, factory: type) -> None:
        self._ops_request_factory = with_accounting(factory)

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.ops.channels.add(channel)  # weak: forgotten once the connection is gone
        return channel

    def log(self, request: Any) -> None:
        """Access lines come from :meth:`Ops.request_done` instead."""


class DrainService(Service):
    """Stopped on SIGTERM along with the listeners: waits for requests in flight."""

    def __init__(self, ops: Ops, grace: float) -> None:
        self.ops = ops
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.ops.drain(self.grace)


# -- options ----------------------------------------------------------------------

OPS_OPT_PARAMETERS = [
    ["shutdown-grace", None, None,
     "Seconds to let requests in flight finish after SIGTERM "
     f"[default: $PLANTCDN_SHUTDOWN_GRACE or {DEFAULT_SHUTDOWN_GRACE:g}]"],
    ["log-format", None, None, "text or json (one JSON object per line) "
     "[default: $PLANTCDN_LOG_FORMAT or text]"],
]  # fmt: skip


def resolve_ops_options(options: usage.Options, environ: Mapping[str, str]) -> None:
    """Resolve ``--shutdown-grace`` and ``--log-format`` (environment as fallback).

    Both formats install an observer through twistd's own ``--logger``
    setting on the parent options (unless the operator chose one, or
    ``--syslog``), writing where ``--logfile`` and ``-n`` say twistd would:
    JSON lines, or twistd's own text lines formatted more cheaply
    (:class:`~plantcdn.accesslog.ClassicTextObserver`).
    """
    grace_text = str(options.get("shutdown-grace") or environ.get("PLANTCDN_SHUTDOWN_GRACE") or "")
    try:
        grace = float(grace_text) if grace_text.strip() else DEFAULT_SHUTDOWN_GRACE
    except ValueError:
        raise usage.UsageError(f"--shutdown-grace must be a number, not {grace_text!r}") from None
    if not 0 <= grace <= 3600:
        raise usage.UsageError("--shutdown-grace must be between 0 and 3600 seconds")
    options["shutdown-grace"] = grace
    fmt = (options.get("log-format") or environ.get("PLANTCDN_LOG_FORMAT") or "text").lower()
    if fmt not in ("text", "json"):
        raise usage.UsageError(f"--log-format must be text or json, not {fmt!r}")
    options["log-format"] = fmt
    parent: Any = getattr(options, "parent", None)
    if parent is not None and not parent.get("logger") and not parent.get("syslog"):
        nodaemon = bool(parent.get("nodaemon"))
        use_target = use_json_target if fmt == "json" else use_text_target
        parent["logger"] = use_target(parent.get("logfile"), nodaemon)
