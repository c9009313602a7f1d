"""Bucket CORS rules: parse, validate, match, and the headers S3 answers with.  Pure.

A bucket's CORS configuration is AWS's own ``CORSConfiguration``: an ordered
list of rules, each naming allowed origins, methods and request headers, the
response headers a browser may read, and how long a preflight may be cached.
It reaches plantcdn three ways, all validated here:

* the JSON that ``aws s3api put-bucket-cors --cors-configuration`` takes
  (``{"CORSRules": [{"AllowedOrigins": [...], ...}]}``), per bucket, in the
  file named by ``PLANTCDN_CORS_CONFIG`` (:func:`cors_settings`);
* the XML body of ``PutBucketCors`` (:meth:`CorsConfiguration.from_xml`);
* the JSON plantcdn persists in ``{bucket folder}/.plantcdn/cors.json``.

Evaluation follows the S3 User Guide, "Elements of a CORS configuration" and
"How does Amazon S3 evaluate the CORS configuration on a bucket?": "the first
CORSRule rule that matches the incoming browser request is used"; a rule
matches when the ``Origin`` matches an ``AllowedOrigin`` (each may contain at
most one ``*`` wildcard), the method (or ``Access-Control-Request-Method``)
is an ``AllowedMethod``, and every header named in
``Access-Control-Request-Headers`` matches an ``AllowedHeader`` (again one
``*`` at most, compared without regard to case).  The header values S3 sends
back, and its refusals, follow what LocalStack records against real S3
(``tests/aws/services/s3/test_s3_cors.snapshot.json``): the origin echoed with
``Access-Control-Allow-Credentials: true`` unless the rule allows ``*``,
``Vary`` on the three request headers, methods joined with ``", "``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from attrs import frozen

from plantcdn.errors import S3Error
from plantcdn.xmlbody import Node, child_text, children, local_name, render

__all__ = [
    "ALLOWED_METHODS",
    "MAX_CONFIG_BYTES",
    "MAX_RULES",
    "CorsConfiguration",
    "CorsRule",
    "cors_settings",
    "match_rule",
    "preflight_headers",
    "response_headers",
    "split_header_list",
]

#: "AllowedMethod -- GET, PUT, POST, DELETE, HEAD" (User Guide, "CORS configuration").
ALLOWED_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
#: "You can add up to 100 rules to the configuration" (User Guide, "CORS configuration").
MAX_RULES = 100
#: "The size of the CORS configuration is limited to 64 KB" (User Guide, same page).
MAX_CONFIG_BYTES = 64 * 1024
#: What S3 sends in ``Vary`` with every CORS answer (LocalStack's AWS snapshots).
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
#: S3's refusal of a preflight no rule allows (``errors.ERRORS["AccessForbidden"]``).
NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the "
    "evalution of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
BUCKET_NOT_FOUND = "CORSResponse: Bucket not found"
NO_ORIGIN = "Insufficient information. Origin request header needed."

_MAX_ID = 255  # "ID ... up to 255 characters" (API Reference, CORSRule)


@frozen
class CorsRule:
    """One ``CORSRule``; tuples keep the order the owner wrote them in."""

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as the AWS CLI / boto3 shape (keys left out when empty)."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["ID"] = self.id
        if self.allowed_headers:
            out["AllowedHeaders"] = list(self.allowed_headers)
        out["AllowedMethods"] = list(self.allowed_methods)
        out["AllowedOrigins"] = list(self.allowed_origins)
        if self.expose_headers:
            out["ExposeHeaders"] = list(self.expose_headers)
        if self.max_age_seconds is not None:
            out["MaxAgeSeconds"] = self.max_age_seconds
        return out

    def to_xml(self) -> Node:
        content: list[Node] = [("ID", self.id)]
        content += [("AllowedHeader", h) for h in self.allowed_headers]
        content += [("AllowedMethod", m) for m in self.allowed_methods]
        content += [("AllowedOrigin", o) for o in self.allowed_origins]
        content += [("ExposeHeader", h) for h in self.expose_headers]
        content.append(("MaxAgeSeconds", self.max_age_seconds))
        return ("CORSRule", content)


@frozen
class CorsConfiguration:
    """A bucket's ``CORSConfiguration``: at least one rule, at most :data:`MAX_RULES`."""

    rules: tuple[CorsRule, ...]

    def to_json(self) -> dict[str, Any]:
        return {"CORSRules": [rule.to_json() for rule in self.rules]}

    def to_xml(self) -> bytes:
        """The ``GetBucketCors`` response body."""
        return render("CORSConfiguration", [rule.to_xml() for rule in self.rules])

    @classmethod
    def from_json(cls, document: Any) -> CorsConfiguration:
        """Build from ``{"CORSRules": [...]}``; S3's error for anything S3 would refuse.

        Unknown keys are refused (as the AWS CLI's parameter validation does), so a
        misspelt ``AllowedOrigin`` cannot silently allow nothing.
        """
        if not isinstance(document, dict) or set(document) != {"CORSRules"}:
            raise S3Error("MalformedXML")
        raw_rules = document["CORSRules"]
        if not isinstance(raw_rules, list):
            raise S3Error("MalformedXML")
        rules = []
        known = {
            "ID", "AllowedHeaders", "AllowedMethods", "AllowedOrigins", "ExposeHeaders",
            "MaxAgeSeconds",
        }  # fmt: skip
        for raw in raw_rules:
            if not isinstance(raw, dict) or not set(raw) <= known:
                raise S3Error("MalformedXML")
            max_age = raw.get("MaxAgeSeconds")
            if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)):
                raise S3Error("MalformedXML")
            rule_id = raw.get("ID")
            if rule_id is not None and not isinstance(rule_id, str):
                raise S3Error("MalformedXML")
            rules.append(
                _checked_rule(
                    rule_id=rule_id,
                    methods=_strings(raw.get("AllowedMethods")),
                    origins=_strings(raw.get("AllowedOrigins")),
                    headers=_strings(raw.get("AllowedHeaders", [])),
                    expose=_strings(raw.get("ExposeHeaders", [])),
                    max_age=max_age,
                )
            )
        return _checked_config(rules)

    @classmethod
    def from_xml(cls, root: Element) -> CorsConfiguration:
        """Build from a parsed ``PutBucketCors`` body (see :func:`plantcdn.xmlbody.parse_xml`).

        Follows the request syntax of the API Reference, "PutBucketCors": any
        element S3's schema does not have is ``MalformedXML``.
        """
        if local_name(root) != "CORSConfiguration":
            raise S3Error("MalformedXML")
        if any(local_name(sub) != "CORSRule" for sub in root):
            raise S3Error("MalformedXML")
        rules = []
        single = {"ID", "MaxAgeSeconds"}
        repeated = {"AllowedHeader", "AllowedMethod", "AllowedOrigin", "ExposeHeader"}
        for element in children(root, "CORSRule"):
            names = [local_name(sub) for sub in element]
            if any(name not in single | repeated for name in names):
                raise S3Error("MalformedXML")
            if any(names.count(name) > 1 for name in single):
                raise S3Error("MalformedXML")
            max_age_text = child_text(element, "MaxAgeSeconds")
            max_age = None
            if max_age_text is not None:
                if not re.fullmatch(r"-?[0-9]{1,10}", max_age_text.strip()):
                    raise S3Error("MalformedXML")
                max_age = int(max_age_text)

            def texts(name: str, element: Element = element) -> list[str]:
                return [(sub.text or "").strip() for sub in children(element, name)]

            rules.append(
                _checked_rule(
                    rule_id=child_text(element, "ID"),
                    methods=texts("AllowedMethod"),
                    origins=texts("AllowedOrigin"),
                    headers=texts("AllowedHeader"),
                    expose=texts("ExposeHeader"),
                    max_age=max_age,
                )
            )
        return _checked_config(rules)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise S3Error("MalformedXML")
    return list(value)


def _checked_rule(
    *,
    rule_id: str | None,
    methods: Sequence[str],
    origins: Sequence[str],
    headers: Sequence[str],
    expose: Sequence[str],
    max_age: int | None,
) -> CorsRule:
    """Apply S3's per-rule checks, with the wording S3 uses for each refusal."""
    if not methods or not origins:  # both are required by the schema
        raise S3Error("MalformedXML")
    for method in methods:
        if method not in ALLOWED_METHODS:
            raise S3Error(
                "InvalidRequest",
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}",
            )
    for origin in origins:
        if origin.count("*") > 1:
            raise S3Error(
                "InvalidRequest",
                f'AllowedOrigin "{origin}" can not have more than one wildcard.',
            )
    for header in headers:
        if header.count("*") > 1:
            raise S3Error(
                "InvalidRequest",
                f'AllowedHeader "{header}" can not have more than one wildcard.',
            )
    if rule_id is not None and len(rule_id) > _MAX_ID:
        raise S3Error("InvalidArgument", "The ID of a CORS rule is longer than 255 characters")
    if max_age is not None and max_age < 0:
        raise S3Error("MalformedXML")
    return CorsRule(
        allowed_methods=tuple(methods),
        allowed_origins=tuple(origins),
        allowed_headers=tuple(headers),
        expose_headers=tuple(expose),
        max_age_seconds=max_age,
        id=rule_id,
    )


def _checked_config(rules: Sequence[CorsRule]) -> CorsConfiguration:
    if not rules:
        raise S3Error("MalformedXML")
    if len(rules) > MAX_RULES:
        # S3-compatible servers that test against AWS record this wording.
        raise S3Error(
            "InvalidRequest",
            f"The number of CORS rules should not exceed allowed limit of {MAX_RULES} rules.",
        )
    return CorsConfiguration(tuple(rules))


# --------------------------------------------------------------------------
# Matching


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """``*`` matches any run of characters (none included); nothing else is special."""
    head, star, tail = pattern.partition("*")
    body = re.escape(head) + (".*" + re.escape(tail) if star else "")
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _origin_matches(allowed: str, origin: str) -> bool:
    # Origins compare with their case (a scheme and host are sent lower-case by
    # browsers); "*" alone allows every origin.
    return allowed == "*" or _wildcard(allowed, ignore_case=False).fullmatch(origin) is not None


def _header_allowed(allowed: Iterable[str], header: str) -> bool:
    return any(_wildcard(a, ignore_case=True).fullmatch(header) is not None for a in allowed)


def split_header_list(value: str | None) -> list[str]:
    """The names in an ``Access-Control-Request-Headers`` value, trimmed, empties dropped."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def match_rule(
    config: CorsConfiguration, origin: str, method: str, request_headers: Sequence[str] = ()
) -> CorsRule | None:
    """The first rule that allows this origin, method and set of request headers."""
    for rule in config.rules:
        if method not in rule.allowed_methods:
            continue
        if not any(_origin_matches(allowed, origin) for allowed in rule.allowed_origins):
            continue
        if not all(_header_allowed(rule.allowed_headers, h) for h in request_headers):
            continue
        return rule
    return None


def response_headers(
    rule: CorsRule, origin: str, request_headers: Sequence[str] = ()
) -> dict[str, str]:
    """The headers S3 adds for a matched rule, to a preflight and to the actual response.

    ``Access-Control-Allow-Headers`` echoes the requested names (lower-cased):
    only a preflight asks for any.
    """
    wildcard = "*" in rule.allowed_origins
    headers = {"Access-Control-Allow-Origin": "*" if wildcard else origin}
    if not wildcard:
        headers["Access-Control-Allow-Credentials"] = "true"
    headers["Vary"] = VARY
    headers["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if request_headers:
        headers["Access-Control-Allow-Headers"] = ", ".join(h.lower() for h in request_headers)
    if rule.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age_seconds is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    return headers


def preflight_headers(
    config: CorsConfiguration | None,
    *,
    bucket_exists: bool,
    origin: str | None,
    method: str | None,
    request_headers: str | None,
    resource_type: str,
) -> dict[str, str]:
    """Answer an ``OPTIONS`` preflight: the headers of a 200, or S3's refusal.

    Order of the checks and the refusals as LocalStack records them against
    S3: no ``Origin`` is a 400 ``BadRequest``; an unknown bucket, a bucket
    without configuration and a request no rule allows are each a 403
    ``AccessForbidden`` naming the method asked for (``OPTIONS`` when the
    preflight names none) and the kind of resource.
    """
    if not origin:
        raise S3Error("BadRequest", NO_ORIGIN, status=400)
    asked = method if method else "OPTIONS"
    extra = {"Method": asked, "ResourceType": resource_type}
    if not bucket_exists:
        raise S3Error(
            "AccessForbidden", BUCKET_NOT_FOUND, extra={**extra, "ResourceType": "BUCKET"}
        )
    if config is None:
        raise S3Error("AccessForbidden", NOT_ENABLED, extra=extra)
    wanted = split_header_list(request_headers)
    rule = match_rule(config, origin, asked, wanted)
    if rule is None:
        raise S3Error("AccessForbidden", NOT_ALLOWED, extra=extra)
    return response_headers(rule, origin, wanted)


# --------------------------------------------------------------------------
# The start-up file


def load_cors_file(path: Path, buckets: Iterable[str]) -> tuple[tuple[str, CorsConfiguration], ...]:
    """Per-bucket configurations from ``{"<bucket>": {"CORSRules": [...]}, ...}``.

    ``ValueError`` names the file, the bucket and what is wrong, so a bad file
    stops the start rather than silently allowing nothing.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read((1 << 20) + 1)
    except OSError as exc:
        raise ValueError(f"PLANTCDN_CORS_CONFIG: cannot read {path}: {exc.strerror}") from None
    if len(raw) > 1 << 20:
        raise ValueError(f"PLANTCDN_CORS_CONFIG: {path} is larger than 1 MiB")
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValueError(f"PLANTCDN_CORS_CONFIG: {path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError(
            f"PLANTCDN_CORS_CONFIG: {path} must hold a JSON object "
            '{"<bucket>": {"CORSRules": [...]}, ...}'
        )
    known = set(buckets)
    result = []
    for bucket, config in document.items():
        if bucket not in known:
            raise ValueError(
                f"PLANTCDN_CORS_CONFIG: {path} names bucket {bucket!r}; "
                f"plantcdn serves {sorted(known)}"
            )
        try:
            parsed = CorsConfiguration.from_json(config)
        except S3Error as error:
            detail = (
                error.message if error.code != "MalformedXML" else
                'expected {"CORSRules": [{"AllowedMethods": [...], "AllowedOrigins": [...], '
                '"AllowedHeaders": [...], "ExposeHeaders": [...], "MaxAgeSeconds": N}]}'
            )  # fmt: skip
            raise ValueError(f"PLANTCDN_CORS_CONFIG: bucket {bucket!r}: {detail}") from None
        result.append((bucket, parsed))
    return tuple(result)


def cors_settings(
    get: Callable[..., str | None], base_dir: Path, buckets: Iterable[str]
) -> tuple[tuple[str, CorsConfiguration], ...]:
    """The ``Config.bucket_cors`` field from the environment getter of ``from_environ``."""
    name = get("PLANTCDN_CORS_CONFIG")
    if name is None:
        return ()
    return load_cors_file(base_dir / Path(name).expanduser(), buckets)
