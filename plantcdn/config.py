"""Configuration: read from the environment once, at the edge, then passed down.

``Config.from_environ`` is the only place that knows the variable names; the
rest of plantcdn receives a frozen :class:`Config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from attrs import field, frozen

from plantcdn.cdnconfig import cdn_settings
from plantcdn.cdncors import CorsPolicy
from plantcdn.corsrules import CorsConfiguration, cors_settings
from plantcdn.credentials import DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY, Credential
from plantcdn.scopes import ScopedCredential, ScopesError, read_scoped_credentials

__all__ = ["BucketConfig", "Config", "ConfigError", "read_dotenv"]

DEFAULT_PORT = 8001
DEFAULT_REGION = "us-east-1"
DEFAULT_ID_PATTERN = r"[0-9]+"
DEFAULT_HEADER_TIMEOUT = 20.0
DEFAULT_BODY_IDLE_TIMEOUT = 20.0
INBOX_FOLDER = "s3_inbox"
LONGTERM_FOLDER = "s3_longterm"


class ConfigError(ValueError):
    """A configuration value that plantcdn cannot start with."""


@frozen
class BucketConfig:
    """One bucket (tier) and the folder, below the data dir, that stores it."""

    name: str
    folder: str


@frozen
class Config:
    """Everything plantcdn needs to run, resolved once at start."""

    port: int = DEFAULT_PORT
    base_url: str = f"http://localhost:{DEFAULT_PORT}"
    credentials: tuple[Credential, ...] = (Credential(DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY),)
    using_dev_credentials: bool = True
    # PLANTCDN_CREDENTIALS_FILE: extra key pairs limited in scope (plantcdn.scopes),
    # loaded once here so a bad file stops the start; reloaded later by the Verifier.
    credentials_file: Path | None = None
    scoped_credentials: tuple[ScopedCredential, ...] = ()
    account_id: str | None = None
    region: str = DEFAULT_REGION
    buckets: tuple[BucketConfig, ...] = (
        BucketConfig("plantdb-inbox", INBOX_FOLDER),
        BucketConfig("plantdb-longterm", LONGTERM_FOLDER),
    )
    data_dir: Path = field(factory=Path.cwd)
    tenant_id_pattern: str = DEFAULT_ID_PATTERN
    fsync: bool = True
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # seconds; 0 = none (plantcdn.connections)
    body_idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT
    cdn_cache_control: str | None = None
    cdn_missing_status: int = 404  # 403: AccessDenied, as CloudFront with a private S3 origin
    cloudfront_public_keys: tuple[tuple[str, str], ...] = ()  # key-pair id -> PEM; () = unsigned
    cdn_cors: CorsPolicy | None = None
    # bucket -> CORS rules applied at start (PLANTCDN_CORS_CONFIG; see plantcdn.cors)
    bucket_cors: tuple[tuple[str, CorsConfiguration], ...] = ()

    @property
    def base_host(self) -> str:
        """The host name of ``BASE_URL``: virtual-hosted requests use ``{bucket}.{host}``."""
        return (urlsplit(self.base_url).hostname or "localhost").lower()

    @property
    def longterm_bucket(self) -> str:
        return next(b.name for b in self.buckets if b.folder == LONGTERM_FOLDER)

    @property
    def inbox_bucket(self) -> str:
        return next(b.name for b in self.buckets if b.folder == INBOX_FOLDER)

    def credential_map(self) -> dict[str, Credential]:
        return {c.access_key_id: c for c in self.credentials}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, data_dir: Path | None = None) -> Config:
        """Build a Config from environment variables (see ``.env.example``)."""

        def get(*names: str) -> str | None:
            for name in names:
                value = environ.get(name)
                if value is not None and value.strip() != "":
                    return value.strip()
            return None

        port_text = get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"PORT must be a number, not {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"PORT must be between 0 and 65535, not {port}")

        base_url = (get("BASE_URL") or f"http://localhost:{port}").rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(f"BASE_URL must be an http(s) URL, not {base_url!r}")

        key_id = get("AWS_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
        secret = get("AWS_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")
        if (key_id is None) != (secret is None):
            raise ConfigError(
                "set both AWS_S3_ACCESS_KEY_ID and AWS_S3_SECRET_ACCESS_KEY, or neither"
            )
        if key_id is None or secret is None:
            credentials = (Credential(DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY),)
            dev = True
        else:
            credentials = (Credential(key_id, secret),)
            dev = key_id == DEV_ACCESS_KEY_ID

        credentials_file, scoped = _scoped_credentials(
            get("PLANTCDN_CREDENTIALS_FILE"), credentials
        )

        account_id = get("AWS_ACCOUNT_ID")
        if account_id is not None and not re.fullmatch(r"[0-9]{12}", account_id):
            raise ConfigError("AWS_ACCOUNT_ID must be a 12-digit AWS account id")

        inbox = get("S3_INBOX_BUCKET") or "plantdb-inbox"
        longterm = get("S3_LONGTERM_BUCKET") or "plantdb-longterm"
        for name in (inbox, longterm):
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name) or ".." in name:
                raise ConfigError(f"{name!r} is not a valid S3 bucket name")
        if inbox == longterm:
            raise ConfigError("S3_INBOX_BUCKET and S3_LONGTERM_BUCKET must differ")

        pattern = get("PLANTCDN_TENANT_ID_PATTERN") or DEFAULT_ID_PATTERN
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"PLANTCDN_TENANT_ID_PATTERN is not a valid regex: {exc}") from None

        fsync_text = (get("PLANTCDN_FSYNC") or "true").lower()
        if fsync_text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ConfigError("PLANTCDN_FSYNC must be true or false")

        header_timeout = _seconds(
            get("PLANTCDN_HEADER_TIMEOUT"), DEFAULT_HEADER_TIMEOUT, "PLANTCDN_HEADER_TIMEOUT"
        )
        body_idle_timeout = _seconds(
            get("PLANTCDN_BODY_IDLE_TIMEOUT"), DEFAULT_BODY_IDLE_TIMEOUT,
            "PLANTCDN_BODY_IDLE_TIMEOUT",
        )

        try:
            cdn = cdn_settings(get, Path.cwd())
            bucket_cors = cors_settings(get, Path.cwd(), (inbox, longterm))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

        return cls(
            port=port,
            base_url=base_url,
            credentials=credentials,
            using_dev_credentials=dev,
            credentials_file=credentials_file,
            scoped_credentials=scoped,
            account_id=account_id,
            region=get("AWS_S3_REGION_NAME", "AWS_REGION") or DEFAULT_REGION,
            buckets=(BucketConfig(inbox, INBOX_FOLDER), BucketConfig(longterm, LONGTERM_FOLDER)),
            data_dir=(data_dir or Path.cwd()).resolve(),
            tenant_id_pattern=pattern,
            fsync=fsync_text in ("true", "1", "yes", "on"),
            cdn_cache_control=get("PLANTCDN_CDN_CACHE_CONTROL"),
            bucket_cors=bucket_cors,
            header_timeout=header_timeout,
            body_idle_timeout=body_idle_timeout,
            **cdn,
        )


def _scoped_credentials(
    text: str | None, main: tuple[Credential, ...]
) -> tuple[Path | None, tuple[ScopedCredential, ...]]:
    """The credentials file (absolute, so a reload finds it again) and its key pairs."""
    if text is None:
        return None, ()
    path = (Path.cwd() / text).resolve()
    try:
        scoped = read_scoped_credentials(path, reserved=[c.access_key_id for c in main])
    except ScopesError as exc:
        raise ConfigError(f"PLANTCDN_CREDENTIALS_FILE: {exc}") from None
    return path, scoped


def _seconds(text: str | None, default: float, name: str) -> float:
    """A timeout in seconds (0 switches it off); a typo must not start a server without one."""
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from None
    if not 0 <= value <= 86400:
        raise ConfigError(f"{name} must be between 0 and 86400 seconds, not {text}")
    return value


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables a ``.env`` file sets (missing file: none).

    Uses python-dotenv, the parser Django and docker-compose users already
    rely on, so quoting and comments behave as they expect.
    """
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def environ_with_dotenv(environ: Mapping[str, str], dotenv_path: Path) -> dict[str, str]:
    """The real environment layered over ``.env`` (the real environment wins)."""
    merged = read_dotenv(dotenv_path)
    merged.update(environ)
    return merged

