"""POST Object: browser uploads with a presigned POST policy.

The body is read as a stream of form events (``formdata``).  The fields
before the file are collected; when the file part starts, the form's
signature and policy are verified (``postpolicy``) and only then are the
file's bytes streamed into an :class:`~plantcdn.writer.UploadWriter` that
enforces ``content-length-range`` as they arrive.  Follows the S3 API
reference "POST Object" and "Browser-based uploads using POST".

Every form field PutObject has a header for is checked the way PutObject
checks that header (``Content-MD5``, ``x-amz-checksum-*``,
``x-amz-storage-class``, ``x-amz-server-side-encryption``, the SSE-C and
object-lock fields, ``x-amz-website-redirect-location``, ``acl``) and
``tagging`` the way PutObjectTagging checks its body, all before the first
byte of the file is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from twisted.internet.defer import Deferred

from plantcdn.call import Handler, S3Call, Services
from plantcdn.digests import PayloadDigest, checksums_from_headers, requested_algorithm
from plantcdn.errors import S3Error
from plantcdn.formdata import Field, FileData, FileEnd, FileStart, FormEvent, FormReader
from plantcdn.objects import (
    CANNED_ACLS,
    check_object_settings,
    set_stored_headers,
    stored_content_encoding,
)
from plantcdn.postpolicy import (
    Policy,
    PolicyVerdict,
    decode_policy,
    evaluate_policy,
    missing_field,
    substitute_filename,
    verify_post_signature,
)
from plantcdn.storage import Bucket, ObjectMeta
from plantcdn.streaming import streamed_sink
from plantcdn.subresources import MAX_TAGGING_BODY, tags_of
from plantcdn.verification import user_metadata
from plantcdn.writer import MAX_PUT_SIZE, UploadWriter, pump_file
from plantcdn.xmlbody import parse_xml

__all__ = ["HANDLERS", "PostUpload", "post_location"]


#: Fields whose value is a URL: ``${filename}`` goes in percent-encoded.
_URL_FIELDS = frozenset({"success_action_redirect", "redirect"})


def _evaluate(
    policy: Policy, fields: Mapping[str, str], filename: str, *, bucket: str, now: float
) -> PolicyVerdict:
    """The policy's verdict on the fields as submitted or, failing that, with
    ``${filename}`` replaced.

    The User Guide ("HTML forms") matches conditions against the expanded
    fields; SDKs such as aws-sdk-ruby sign ``{"key": "uploads/${filename}"}``,
    which S3 accepts too. A form that passes either way is accepted; one that
    passes neither gets the refusal of the fields as submitted.
    """
    try:
        return evaluate_policy(policy, fields, bucket=bucket, now=now)
    except S3Error as refusal:
        plain = {name: substitute_filename(value, filename) for name, value in fields.items()}
        if plain == fields:
            raise
        try:
            return evaluate_policy(policy, plain, bucket=bucket, now=now)
        except S3Error:
            raise refusal from None


def expand_filename(fields: Mapping[str, str], filename: str) -> dict[str, str]:
    """The fields with ``${filename}`` replaced, in a form each field can carry.

    "The variable ${filename} is automatically replaced with the name of the
    file provided by the user and is recognized by all form fields" (POST
    Object, "Form fields").  A redirect URL gets the name percent-encoded, so
    ``&``, ``#`` or a space in a file name cannot break the URL; ``tagging``
    gets it XML-escaped, so the tag value is the file name rather than markup.
    """
    base = substitute_filename("${filename}", filename)
    expanded = {}
    for name, value in fields.items():
        if name in _URL_FIELDS:
            expanded[name] = value.replace("${filename}", quote(base, safe=""))
        elif name == "tagging":
            expanded[name] = value.replace("${filename}", escape(base))
        else:
            expanded[name] = value.replace("${filename}", base)
    return expanded


def stored_tagging(xml_text: str | None) -> str | None:
    """The ``tagging`` field's XML tag set, stored as ``x-amz-tagging`` tags are.

    POST Object, "Form fields": ``tagging`` is a ``<Tagging><TagSet>`` document
    (not PutObject's ``k=v`` header form).  It is held to PutObjectTagging's
    rules (subresources' validator), then kept in the ``k=v&k2=v2`` form
    GetObjectTagging reads, exactly as PutObjectTagging stores it.
    """
    if xml_text is None:
        return None
    tags = tags_of(parse_xml(xml_text.encode("utf-8"), MAX_TAGGING_BODY))
    return urlencode(tags, quote_via=quote) if tags else None


def check_checksum_algorithm(fields: Mapping[str, str], checksums: Mapping[str, str]) -> None:
    """``x-amz-checksum-algorithm`` needs the value of that very algorithm.

    POST Object, "Form fields": "If a value is specified, you must include the
    matching checksum header. Otherwise, your request will generate a 400
    error."  A value of another algorithm is BadDigest, as the PutObject API
    reference says for ``x-amz-sdk-checksum-algorithm``; none at all is
    InvalidRequest (no code is documented for it).
    """
    raw = fields.get("x-amz-checksum-algorithm")
    if raw is None:
        return
    algorithm = requested_algorithm(raw)
    if algorithm in checksums:
        return
    if checksums:
        other = next(iter(checksums))
        raise S3Error(
            "BadDigest",
            f"x-amz-checksum-algorithm is {algorithm} but the checksum provided is "
            f"x-amz-checksum-{other.lower()}.",
        )
    raise S3Error(
        "InvalidRequest",
        f"x-amz-checksum-algorithm specified, but no x-amz-checksum-{algorithm.lower()} "
        "field was found.",
    )


class PostUpload:
    """One form upload, fed the raw body piece by piece (from a spool or the wire)."""

    def __init__(
        self, svc: Services, bucket: Bucket, content_type: str, *, now: float
    ) -> None:
        self.svc = svc
        self.bucket = bucket
        self.now = now
        self.reader = FormReader(content_type)
        self.fields: dict[str, str] = {}
        #: The fields with ${filename} expanded, once the file part has started.
        self.expanded: dict[str, str] = {}
        self.tagging: str | None = None
        self.writer: UploadWriter | None = None
        self.key: str | None = None
        self.file_done = False

    @property
    def complete(self) -> bool:
        """True once the file part has ended: the rest of the body is ignored."""
        return self.file_done

    def write(self, data: bytes) -> None:
        try:
            for event in self.reader.feed(data):
                self._handle(event)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def _handle(self, event: FormEvent) -> None:
        if isinstance(event, Field):
            self.fields[event.name] = event.value
        elif isinstance(event, FileStart):
            self._start(event)
        elif isinstance(event, FileData):
            if self.writer is not None:
                self.writer.write(event.data)
        elif isinstance(event, FileEnd):
            self.file_done = True

    def _start(self, start: FileStart) -> None:
        """Verify signature and policy before a single byte of the file is stored."""
        config = self.svc.config
        fields = self.fields
        signer = verify_post_signature(
            fields, self.svc.verifier.credentials, now=self.now, region=config.region
        )
        if "policy" not in fields:
            raise missing_field("Policy")
        policy = decode_policy(fields["policy"])
        filename = start.filename or ""
        verdict = _evaluate(policy, fields, filename, bucket=self.bucket.name, now=self.now)
        key = substitute_filename(fields["key"], filename)
        self.svc.verifier.check_write_key(key)
        # Scoped credentials: the final key (after ${filename}) must be in the signer's scope.
        self.svc.verifier.authorize(signer.access_key_id, "PostObject", self.bucket.name, key)
        expanded = expand_filename(fields, filename)
        acl = expanded.get("acl")
        if acl is not None and acl not in CANNED_ACLS:
            raise S3Error("InvalidArgument", extra={"ArgumentName": "acl", "ArgumentValue": acl})
        check_object_settings(expanded)  # as PutObject checks the same-named headers
        user_metadata(expanded)
        self.tagging = stored_tagging(expanded.get("tagging"))
        checksums = checksums_from_headers(expanded)
        digest = PayloadDigest(content_md5=expanded.get("content-md5"), checksums=checksums)
        check_checksum_algorithm(expanded, checksums)
        self.expanded = expanded
        self.key = key
        self.writer = UploadWriter(
            self.svc.storage,
            self.bucket,
            key,
            digest=digest,
            max_size=min(verdict.max_length if verdict.max_length is not None else MAX_PUT_SIZE,
                         MAX_PUT_SIZE),
            min_size=verdict.min_length or 0,
        )

    def finish(self, reactor: object = None) -> Deferred[ObjectMeta]:
        """The body has ended: publish the file (or fail with what S3 would answer).

        With *reactor*, an fsync'ed commit runs on its thread pool
        (:meth:`~plantcdn.writer.UploadWriter.finish_durably`).
        """
        try:
            for event in self.reader.finish():
                self._handle(event)
            if self.writer is None or self.key is None or not self.file_done:
                raise S3Error("MalformedPOSTRequest")
            fields = self.expanded
            meta = user_metadata(fields)
            now = self.svc.clock.seconds()
            return self.writer.finish_durably(
                lambda result: ObjectMeta(
                    etag=f'"{result.md5_hex}"',
                    size=result.size,
                    last_modified=now,
                    content_type=fields.get("content-type") or "binary/octet-stream",
                    content_encoding=stored_content_encoding(fields.get("content-encoding")),
                    content_disposition=fields.get("content-disposition"),
                    cache_control=fields.get("cache-control"),
                    expires=fields.get("expires"),
                    user_metadata=meta,
                    checksums=dict(result.checksums),
                    checksum_type="FULL_OBJECT" if result.checksums else None,
                    acl=fields.get("acl"),
                    tagging=self.tagging,
                    storage_class=fields.get("x-amz-storage-class"),
                    website_redirect_location=fields.get("x-amz-website-redirect-location"),
                ),
                reactor,
            )
        except BaseException:
            self.abort()
            raise


def post_location(call: S3Call, base_url: str, bucket: str, key: str) -> str:
    """The object's URL, as S3 puts it in ``Location``: built from ``BASE_URL``."""
    parts = urlsplit(base_url)
    path_key = quote(key, safe="/~")
    if call.target.virtual_hosted:
        netloc = f"{bucket}.{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, f"{parts.path}/{path_key}", "", ""))
    return urlunsplit((parts.scheme, parts.netloc, f"{parts.path}/{bucket}/{path_key}", "", ""))


def _redirect(url: str, bucket: str, key: str, etag: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    query = urlencode({"bucket": bucket, "key": key, "etag": etag})
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


def _success(call: S3Call, fields: Mapping[str, str], bucket: str, key: str,
             meta: ObjectMeta, location: str) -> bytes:
    """Answer as ``success_action_redirect`` / ``success_action_status`` ask.

    *fields* have ``${filename}`` expanded.  Every answer carries the headers
    PutObject's does: the ETag, the stored checksum and SSE-S3 (S3 encrypts
    every new object; POST Object, "Responses").
    """
    call.set_header("ETag", meta.etag)
    set_stored_headers(call, meta)
    call.set_header("Location", location)
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        target = _redirect(redirect, bucket, key, meta.etag)
        if target is not None:
            call.request.setResponseCode(303)
            call.set_header("Location", target)
            call.set_header("Content-Length", "0")
            return b""
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
            f"<Location>{escape(location)}</Location><Bucket>{escape(bucket)}</Bucket>"
            f"<Key>{escape(key)}</Key><ETag>{escape(meta.etag)}</ETag></PostResponse>"
        ).encode()
        call.request.setResponseCode(201)
        call.set_header("Content-Type", "application/xml")
        call.set_header("Content-Length", str(len(body)))
        return body
    call.request.setResponseCode(200 if status == "200" else 204)
    call.set_header("Content-Length", "0")
    return b""


def start_post(svc: Services, call: S3Call) -> PostUpload:
    """A form upload ready to be fed the body (checks needing no body come first)."""
    assert call.target.bucket is not None
    bucket = svc.storage.bucket(call.target.bucket)
    return PostUpload(svc, bucket, call.headers.get("content-type", ""), now=call.now)


async def post_object(svc: Services, call: S3Call) -> bytes:
    upload: PostUpload | None = streamed_sink(call)
    if upload is None:
        upload = start_post(svc, call)
        await pump_file(call.request.content, upload, svc.cooperator, until=lambda: upload.complete)
    bucket = upload.bucket
    meta = await upload.finish(svc.clock)
    assert upload.key is not None
    location = post_location(call, svc.config.base_url, bucket.name, upload.key)
    return _success(call, upload.expanded, bucket.name, upload.key, meta, location)


HANDLERS: dict[str, Handler] = {"PostObject": post_object}
