"""Reference image worker: inbox raw upload -> WebP variants in the long-term bucket.

Kept for reference and as a runnable demonstration of the pipeline (see
README.md beside this file for the variant contract).  Not part of plantcdn:
it needs Pillow, which plantcdn never imports.

    python archived_processors/worker.py --endpoint http://localhost:8001 KEY [KEY ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from attrs import frozen
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from PIL import Image, ImageOps
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import react
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from zope.interface import implementer

DEV_ACCESS_KEY_ID = "PLANTCDNDEVACCESSKEY"
DEV_SECRET_ACCESS_KEY = "plantcdn-dev-secret-key-do-not-use-in-prod"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_RAW_BYTES = 50 * 1024 * 1024
CACHE_CONTROL = "public, max-age=31536000, immutable"
RAW_KEY = re.compile(r"(company_[^/]+/plant_[^/]+)/([^/]+)\.(jpe?g|png|webp)", re.IGNORECASE)
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


@frozen
class Variant:
    name: str
    max_size: int
    quality: int


#: The variant contract (README.md): name, bounding box, WebP quality.
VARIANTS = (Variant("thumb", 256, 80), Variant("medium", 1024, 82), Variant("large", 2048, 85))


class WorkerError(Exception):
    """A raw upload the worker refuses, or an S3 answer it did not expect."""


# -- SigV4 as an agent wrapper ----------------------------------------------------


@implementer(IBodyProducer)
class SignedBody:
    """A request body whose SHA-256 the signer can use (so the payload is signed too)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _PresetPayloadAuth(S3SigV4Auth):
    """botocore's S3 SigV4 signer, told the payload hash instead of reading a body."""

    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@implementer(IAgent)
class SigV4Agent:
    """Wraps an ``IAgent`` and signs every request with AWS Signature Version 4."""

    def __init__(self, agent: IAgent, credentials: Credentials, region: str) -> None:
        self.agent = agent
        self.credentials = credentials
        self.region = region

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[Any]:
        headers = headers.copy() if headers is not None else Headers()
        if bodyProducer is None:
            payload_hash = EMPTY_SHA256
        elif isinstance(bodyProducer, SignedBody):
            payload_hash = bodyProducer.sha256
        else:
            payload_hash = UNSIGNED
        plain = {
            name.decode("latin-1"): b",".join(values).decode("latin-1")
            for name, values in headers.getAllRawHeaders()
        }
        if bodyProducer is not None and bodyProducer.length is not None:
            plain["Content-Length"] = str(bodyProducer.length)
        aws = AWSRequest(method=method.decode("ascii"), url=uri.decode("ascii"), headers=plain)
        _PresetPayloadAuth(self.credentials, self.region, payload_hash).add_auth(aws)
        signed = Headers()
        for name, value in aws.headers.items():
            if name.lower() != "content-length":  # the agent sets it from the producer
                signed.setRawHeaders(name.encode("latin-1"), [value.encode("latin-1")])
        return self.agent.request(method, uri, signed, bodyProducer)


# -- the image work (pure, no I/O) --------------------------------------------------


def variant_key(raw_key: str, variant: Variant) -> str:
    """The long-term key of one variant of the raw upload *raw_key*."""
    match = RAW_KEY.fullmatch(raw_key)
    if match is None:
        raise WorkerError(f"not a raw upload key: {raw_key!r}")
    prefix, image_id, _ = match.groups()
    return f"{prefix}/{image_id}/{variant.name}.webp"


def make_variants(raw: bytes) -> list[tuple[Variant, bytes, tuple[int, int]]]:
    """Every variant of the contract as WebP bytes with its pixel size."""
    if len(raw) > MAX_RAW_BYTES:
        raise WorkerError("raw upload is larger than 50 MiB")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            image_format = probe.format
            probe.verify()
    except Exception as exc:
        raise WorkerError(f"not an image Pillow can read: {exc}") from None
    if image_format not in ACCEPTED_FORMATS:
        raise WorkerError(f"unsupported image format {image_format}")
    with Image.open(io.BytesIO(raw)) as opened:
        image = ImageOps.exif_transpose(opened)
        has_alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    results = []
    for variant in VARIANTS:
        copy = image.copy()
        copy.thumbnail((variant.max_size, variant.max_size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        copy.save(out, "WEBP", quality=variant.quality, method=4)  # no exif, no icc
        results.append((variant, out.getvalue(), copy.size))
    return results


# -- talking to S3 ---------------------------------------------------------------------


@frozen
class Settings:
    endpoint: str
    region: str
    inbox: str
    longterm: str
    credentials: Credentials

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], endpoint: str) -> Settings:
        key = environ.get("AWS_S3_ACCESS_KEY_ID") or environ.get("AWS_ACCESS_KEY_ID")
        secret = environ.get("AWS_S3_SECRET_ACCESS_KEY") or environ.get("AWS_SECRET_ACCESS_KEY")
        return cls(
            endpoint=endpoint.rstrip("/"),
            region=environ.get("AWS_S3_REGION_NAME") or environ.get("AWS_REGION") or "us-east-1",
            inbox=environ.get("S3_INBOX_BUCKET") or "plantdb-inbox",
            longterm=environ.get("S3_LONGTERM_BUCKET") or "plantdb-longterm",
            credentials=Credentials(key or DEV_ACCESS_KEY_ID, secret or DEV_SECRET_ACCESS_KEY),
        )

    def url(self, bucket: str, key: str) -> str:
        return f"{self.endpoint}/{bucket}/{quote(key, safe='/')}"


async def process(http: Any, settings: Settings, raw_key: str, *, delete_raw: bool) -> dict:
    """Read one raw upload, store its variants, say what was stored."""
    for variant in VARIANTS:
        variant_key(raw_key, variant)  # refuse a bad key before any request
    response = await http.get(settings.url(settings.inbox, raw_key))
    raw = await response.content()
    if response.code != 200:
        raise WorkerError(f"GetObject {raw_key}: HTTP {response.code}: {raw[:300]!r}")
    stored = []
    for variant, body, (width, height) in make_variants(raw):
        key = variant_key(raw_key, variant)
        answer = await http.put(
            settings.url(settings.longterm, key),
            data=SignedBody(body),
            headers={
                "Content-Type": "image/webp",
                "Cache-Control": CACHE_CONTROL,
                "x-amz-meta-source-key": raw_key,
                "x-amz-meta-width": str(width),
                "x-amz-meta-height": str(height),
            },
        )
        text = await answer.content()
        if answer.code != 200:
            raise WorkerError(f"PutObject {key}: HTTP {answer.code}: {text[:300]!r}")
        stored.append({"variant": variant.name, "key": key, "width": width, "height": height,
                       "bytes": len(body), "etag": answer.headers.getRawHeaders("etag", [""])[0]})
    if delete_raw:
        gone = await http.delete(settings.url(settings.inbox, raw_key))
        await gone.content()
    return {"source": raw_key, "variants": stored}


async def run(reactor: Any, argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("BASE_URL", "http://localhost:8001"))
    parser.add_argument("--delete-raw", action="store_true")
    parser.add_argument("keys", nargs="+", help="raw upload keys in the inbox bucket")
    args = parser.parse_args(argv)
    settings = Settings.from_environ(os.environ, args.endpoint)
    agent = SigV4Agent(Agent(reactor), settings.credentials, settings.region)
    http = HTTPClient(agent)
    for key in args.keys:
        result = await process(http, settings, key, delete_raw=args.delete_raw)
        print(json.dumps(result), flush=True)


def main() -> None:
    def start(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(run(reactor, sys.argv[1:]))

    react(start)


if __name__ == "__main__":
    main()
