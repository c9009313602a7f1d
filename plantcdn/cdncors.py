"""CORS on ``/cdn``, as a CloudFront response headers policy adds it: pure rules.

CloudFront "adds these headers to HTTP responses that it sends for CORS
requests that match a cache behavior associated with this response headers
policy" (CloudFront API Reference, ``ResponseHeadersPolicyCorsConfig``).  The
settings and their meaning follow the Developer Guide page "Understand
response headers policies" (section "CORS headers"): allowed origins (a list,
``*`` for all, and ``https://*.example.com`` wildcards), methods (``ALL`` for
every method), headers (``*`` for all), exposed headers, max age and
credentials.  Nothing here touches Twisted: the resource asks for the headers
of one request and sets them.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

__all__ = ["CorsPolicy", "cors_headers", "origin_allowed", "preflight_headers"]

#: ``ALL`` expands to these ("AccessControlAllowMethods": "ALL is a special value
#: that includes all of the listed HTTP methods").
ALL_METHODS = ("GET", "DELETE", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
#: What a read-only distribution (GET, HEAD, OPTIONS) can answer.
DEFAULT_METHODS = ("GET", "HEAD", "OPTIONS")


@frozen
class CorsPolicy:
    """One response headers policy's CORS settings (``OriginOverride`` is moot: the
    origin behind ``/cdn`` never sends CORS headers of its own)."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = ("*",)
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def parse(
        cls,
        origins: str,
        *,
        methods: str | None = None,
        headers: str | None = None,
        expose: str | None = None,
        max_age: str | None = None,
        credentials: str | None = None,
    ) -> CorsPolicy:
        """Build a policy from comma-separated settings; ``ValueError`` names the bad one.

        CloudFront itself refuses a policy that allows credentials for every
        origin (the CORS protocol forbids ``*`` with credentials), so this does too.
        """
        allow_origins = _split(origins)
        if not allow_origins:
            raise ValueError("PLANTCDN_CDN_CORS_ORIGINS must list at least one origin or '*'")
        allow_methods = tuple(m.upper() for m in _split(methods)) or DEFAULT_METHODS
        if "ALL" in allow_methods:
            allow_methods = ALL_METHODS
        unknown = [m for m in allow_methods if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"PLANTCDN_CDN_CORS_METHODS has unknown methods: {unknown}")
        age: int | None = None
        if max_age:
            try:
                age = int(max_age)
            except ValueError:
                raise ValueError("PLANTCDN_CDN_CORS_MAX_AGE must be a number of seconds") from None
            if age < 0:
                raise ValueError("PLANTCDN_CDN_CORS_MAX_AGE must not be negative")
        creds_text = (credentials or "false").strip().lower()
        if creds_text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError("PLANTCDN_CDN_CORS_CREDENTIALS must be true or false")
        creds = creds_text in ("true", "1", "yes", "on")
        if creds and "*" in allow_origins:
            raise ValueError(
                "PLANTCDN_CDN_CORS_CREDENTIALS=true cannot be combined with origin '*'"
            )
        return cls(
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=_split(headers) if headers is not None else ("*",),
            expose_headers=_split(expose),
            max_age=age,
            allow_credentials=creds,
        )


def _split(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def origin_allowed(policy: CorsPolicy, origin: str) -> bool:
    """Whether *origin* is one the policy names (exactly, by ``*``, or by a ``*.`` wildcard)."""
    for allowed in policy.allow_origins:
        if allowed == "*" or allowed == origin:
            return True
        if "*." in allowed:
            scheme_host, _, rest = allowed.partition("*.")
            if origin.startswith(scheme_host) and origin.endswith("." + rest):
                label = origin[len(scheme_host) : -len(rest) - 1]
                if label and "/" not in label and ":" not in label:
                    return True
    return False


def _allow_origin(policy: CorsPolicy, origin: str) -> dict[str, str]:
    # "*" is sent as "*" only when every origin is allowed and credentials are off;
    # otherwise the request's own origin is echoed and caches must vary on it.
    if policy.allow_origins == ("*",) and not policy.allow_credentials:
        return {"Access-Control-Allow-Origin": "*"}
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if policy.allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


def cors_headers(policy: CorsPolicy | None, origin: str | None) -> dict[str, str]:
    """Headers for an actual (non-preflight) request: none unless it is a CORS request
    from an allowed origin."""
    if policy is None or origin is None or not origin_allowed(policy, origin):
        return {}
    headers = _allow_origin(policy, origin)
    if policy.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(policy.expose_headers)
    return headers


def preflight_headers(
    policy: CorsPolicy | None,
    origin: str | None,
    method: str | None,
    request_headers: str | None,
) -> dict[str, str] | None:
    """Headers answering a preflight, or ``None`` when the policy does not allow it."""
    if policy is None or origin is None or method is None:
        return None
    if not origin_allowed(policy, origin) or method.strip().upper() not in policy.allow_methods:
        return None
    wanted = _split(request_headers)
    if "*" not in policy.allow_headers:
        allowed = {h.lower() for h in policy.allow_headers}
        if any(h.lower() not in allowed for h in wanted):
            return None
    headers = _allow_origin(policy, origin)
    headers["Access-Control-Allow-Methods"] = ", ".join(policy.allow_methods)
    if wanted or "*" not in policy.allow_headers:
        headers["Access-Control-Allow-Headers"] = ", ".join(
            _echo(wanted) if "*" in policy.allow_headers else policy.allow_headers
        )
    if policy.max_age is not None:
        headers["Access-Control-Max-Age"] = str(policy.max_age)
    return headers


def _echo(wanted: Iterable[str]) -> tuple[str, ...]:
    # With "*" allowed, echoing the asked-for names also works for credentialed
    # requests, where browsers read "*" literally.
    return tuple(wanted)
