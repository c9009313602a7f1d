"""A sans-IO, streaming reader of S3 POST Object bodies (``multipart/form-data``).

Feed it the request body in whatever pieces the transport delivers; it returns
events.  It never holds the file: file bytes come back as :class:`FileData`
pieces no larger than the piece fed.  Everything before the file is bounded
(S3's 20 KB pre-file limit), so a hostile body costs at most that much memory.

The byte-level parsing is python-multipart's callback ``MultipartParser`` (the
parser Starlette and FastAPI use); this module adds S3's rules, from the
"POST Object" API page and the S3 User Guide's "HTML Forms":

* the part named ``file`` (any case) is the upload and "must be the last field
  in the form. Any fields below it are ignored" -- after it the reader consumes
  and discards everything, malformed or not;
* every other part is a form field, even when it carries a ``filename``
  parameter (some clients send every field that way);
* "The form data and boundaries (excluding the contents of the file) cannot
  exceed 20 KB" -> ``MaxPostPreDataLengthExceededError``;
* "If you have multiple fields with the same name, the values must be separated
  by commas" in the policy -- S3 joins repeated fields with ``,``; so does this
  reader, which is why fields are emitted together, just before
  :class:`FileStart`, once none can repeat any more;
* no ``file`` part -> ``InvalidArgument`` "POST requires exactly one file upload
  per request." (``ArgumentName`` file, ``ArgumentValue`` 0).

Event order for a good body: ``Field``\\* ``FileStart`` ``FileData``\\* ``FileEnd``,
and nothing afterwards.
"""

from __future__ import annotations

from attrs import frozen
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from plantcdn.errors import S3Error

__all__ = [
    "MAX_PRE_DATA_BYTES",
    "Field",
    "FileData",
    "FileEnd",
    "FileStart",
    "FormEvent",
    "FormReader",
]

#: "The form data and boundaries (excluding the contents of the file) cannot
#: exceed 20 KB." (S3 User Guide, "HTML Forms").
MAX_PRE_DATA_BYTES = 20 * 1024

# Bytes a part costs around its headers and value: "\r\n--" + boundary + "\r\n"
# before it, one CRLF closing each header line ("Name: value\r\n", the ": " also
# counted) and the blank line ending the headers.
_HEADER_LINE_OVERHEAD = 4
_HEADERS_END = 2


@frozen
class Field:
    """A form field that precedes the file; *name* lower-cased (S3 ignores case)."""

    name: str
    value: str


@frozen
class FileStart:
    """The ``file`` part begins; *filename* is "" when the part names none."""

    filename: str
    content_type: str | None


@frozen
class FileData:
    """A piece of the file, passed through as it arrived."""

    data: bytes


@frozen
class FileEnd:
    """The file is complete (its closing boundary was seen)."""


FormEvent = Field | FileStart | FileData | FileEnd


def _malformed() -> S3Error:
    return S3Error("MalformedPOSTRequest")


def _too_large() -> S3Error:
    return S3Error("MaxPostPreDataLengthExceededError")


class FormReader:
    """Turns a POST Object body into :data:`FormEvent` values, one piece at a time.

    ``feed`` and ``finish`` raise :class:`~plantcdn.errors.S3Error` with S3's code
    for a body S3 would refuse; after a raise the reader is spent.  Splitting the
    body differently never changes the events (apart from how the file's bytes
    are cut into :class:`FileData` pieces).
    """

    def __init__(
        self,
        content_type: str,
        *,
        max_field_bytes: int = MAX_PRE_DATA_BYTES,
        max_parts: int = 1000,
    ) -> None:
        media_type, params = parse_options_header(content_type)
        if media_type != b"multipart/form-data":
            # What S3 answers a POST to a bucket that is not a form upload.
            raise S3Error(
                "PreconditionFailed",
                extra={
                    "Condition": "Bucket POST must be of the enclosure-type multipart/form-data"
                },
            )
        boundary = params.get(b"boundary")
        if not boundary:
            raise _malformed()
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError:  # e.g. a boundary longer than RFC 2046 allows
            raise _malformed() from None
        self._max_pre = max_field_bytes
        self._max_parts = max_parts
        self._overhead = len(boundary) + 6  # "\r\n--" boundary "\r\n"
        self._pre_bytes = 0
        self._parts = 0
        self._events: list[FormEvent] = []
        # Fields in order of first appearance; repeated names join with ",".
        self._fields: dict[str, list[str]] = {}
        # The part being read.
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._value = bytearray()
        self._in_file = False
        self._file_done = False  # after FileEnd: discard the rest
        self._ended = False  # the closing boundary was seen
        self._failed = False

    # -- public API -------------------------------------------------------

    def feed(self, data: bytes) -> list[FormEvent]:
        """Parse the next piece of the body; return the events it completes."""
        if self._failed:
            raise _malformed()
        if self._file_done or not data:
            return []
        try:
            self._parser.write(data)
        except S3Error:
            self._failed = True
            raise
        except FormParserError:
            if not self._file_done:
                self._failed = True
                raise _malformed() from None
        events, self._events = self._events, []
        return events

    def finish(self) -> list[FormEvent]:
        """The body has ended: return the last events, or S3's refusal.

        The HTTP layer reports a body shorter than its Content-Length as
        ``IncompleteBody`` itself; a complete body whose multipart framing stops
        before the file's closing boundary is ``MalformedPOSTRequest``.
        """
        if self._failed:
            raise _malformed()
        if self._file_done:
            return []
        self._failed = True
        if self._in_file or not self._ended:
            raise _malformed()
        raise S3Error(
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
            extra={"ArgumentName": "file", "ArgumentValue": "0"},
        )

    # -- accounting ---------------------------------------------------------

    def _charge(self, amount: int) -> None:
        """Count *amount* bytes against the pre-file limit (headers and field values)."""
        if self._file_done:
            return
        self._pre_bytes += amount
        if self._pre_bytes > self._max_pre:
            raise _too_large()

    # -- parser callbacks -------------------------------------------------

    def _on_part_begin(self) -> None:
        if self._file_done:
            return
        self._parts += 1
        if self._parts > self._max_parts:
            raise _malformed()
        self._charge(self._overhead)
        self._headers = {}
        self._value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        if self._file_done:
            return
        self._charge(end - start)
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        if self._file_done:
            return
        self._charge(end - start)
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._file_done:
            return
        self._charge(_HEADER_LINE_OVERHEAD)
        name = bytes(self._header_name).decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._header_value).decode("latin-1").strip()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        if self._file_done:
            return
        self._charge(_HEADERS_END)
        disposition = self._headers.get("content-disposition")
        if disposition is None:
            raise _malformed()
        _, params = parse_options_header(disposition)
        raw_name = params.get(b"name")
        if raw_name is None:
            raise _malformed()
        name = _utf8(raw_name).lower()
        if name != "file":
            return
        self._in_file = True
        self._flush_fields()
        filename = params.get(b"filename")
        content_type = self._headers.get("content-type")
        self._events.append(
            FileStart(
                filename="" if filename is None else _utf8(filename),
                content_type=None
                if content_type is None
                else _utf8(content_type.encode("latin-1")),
            )
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file_done or end <= start:
            return
        if self._in_file:
            self._events.append(FileData(data[start:end]))
            return
        self._charge(end - start)
        self._value += data[start:end]

    def _on_part_end(self) -> None:
        if self._file_done:
            return
        if self._in_file:
            self._in_file = False
            self._file_done = True
            self._events.append(FileEnd())
            return
        disposition = self._headers.get("content-disposition", "")
        _, params = parse_options_header(disposition)
        name = _utf8(params.get(b"name", b"")).lower()
        self._fields.setdefault(name, []).append(_utf8(bytes(self._value)))
        self._value = bytearray()

    def _on_end(self) -> None:
        self._ended = True

    def _flush_fields(self) -> None:
        for name, values in self._fields.items():
            self._events.append(Field(name, ",".join(values)))
        self._fields = {}


def _utf8(raw: bytes) -> str:
    """Form text is UTF-8 ("The form and policy must be UTF-8 encoded")."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed() from None
