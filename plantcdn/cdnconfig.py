"""The ``/cdn`` settings of :class:`~plantcdn.config.Config`, read from the environment.

Kept apart from ``config.py`` so the CloudFront emulation's knobs (missing
object status, signing keys, CORS policy) live next to the code that uses
them; ``Config.from_environ`` calls :func:`cdn_settings` once and turns a
``ValueError`` into a start-up ``ConfigError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plantcdn.cdncors import CorsPolicy
from plantcdn.cfsigning import load_public_keys

__all__ = ["cdn_settings", "read_public_keys_file"]

#: A public key file is a few KiB; a key group holds at most a handful of keys.
_MAX_KEYS_FILE_BYTES = 1 << 20


def read_public_keys_file(path: Path) -> tuple[tuple[str, str], ...]:
    """The key group in *path*: a JSON object mapping key-pair id -> PEM.

    Each value is either the PEM text itself (``-----BEGIN PUBLIC KEY-----...``)
    or the path of a PEM file, relative to the JSON file's folder.  Every key
    is parsed once here, so a bad key stops the start rather than a request.
    """
    try:
        raw = path.read_bytes()[:_MAX_KEYS_FILE_BYTES]
        document = json.loads(raw)
    except OSError as exc:
        raise ValueError(
            f"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS: cannot read {path}: {exc.strerror}"
        ) from None
    except ValueError:
        raise ValueError(f"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS: {path} is not valid JSON") from None
    if not isinstance(document, dict) or not document:
        raise ValueError(
            f"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS: {path} must hold a JSON object "
            '{"<key-pair id>": "<PEM text or PEM file path>", ...}'
        )
    keys: dict[str, str] = {}
    for key_id, value in document.items():
        if not isinstance(value, str):
            raise ValueError(f"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS: key {key_id!r} is not a string")
        if "-----BEGIN" in value:
            pem = value
        else:
            pem_path = (path.parent / value).expanduser()
            try:
                pem = pem_path.read_text("ascii")
            except (OSError, UnicodeDecodeError):
                raise ValueError(
                    f"PLANTCDN_CLOUDFRONT_PUBLIC_KEYS: cannot read the PEM of {key_id!r} "
                    f"from {pem_path}"
                ) from None
        keys[key_id] = pem
    load_public_keys(keys)  # raises ValueError naming the key id, never the key
    return tuple(sorted(keys.items()))


def cdn_settings(get: Callable[..., str | None], base_dir: Path) -> dict[str, Any]:
    """The ``Config`` fields of ``/cdn`` from the environment getter of ``from_environ``."""
    missing_text = get("PLANTCDN_CDN_MISSING") or "404"
    if missing_text not in ("403", "404"):
        raise ValueError("PLANTCDN_CDN_MISSING must be 404 (NoSuchKey) or 403 (AccessDenied)")
    keys_path = get("PLANTCDN_CLOUDFRONT_PUBLIC_KEYS")
    public_keys: tuple[tuple[str, str], ...] = ()
    if keys_path is not None:
        public_keys = read_public_keys_file((base_dir / keys_path).expanduser())
    origins = get("PLANTCDN_CDN_CORS_ORIGINS")
    cors = None
    if origins is not None:
        cors = CorsPolicy.parse(
            origins,
            methods=get("PLANTCDN_CDN_CORS_METHODS"),
            headers=get("PLANTCDN_CDN_CORS_HEADERS"),
            expose=get("PLANTCDN_CDN_CORS_EXPOSE"),
            max_age=get("PLANTCDN_CDN_CORS_MAX_AGE"),
            credentials=get("PLANTCDN_CDN_CORS_CREDENTIALS"),
        )
    return {
        "cdn_missing_status": int(missing_text),
        "cloudfront_public_keys": public_keys,
        "cdn_cors": cors,
    }
