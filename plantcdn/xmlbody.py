"""XML request bodies parsed safely, XML response bodies rendered: pure, no Twisted.

S3 takes XML bodies for DeleteObjects, PutObjectTagging, CompleteMultipartUpload,
PutBucketCors ...  They come from the network, so they are parsed with
``defusedxml`` (no DTDs, no entity expansion, no external references) after a
size check, and anything that is not well-formed raises ``MalformedXML`` as S3
does.  S3 accepts request elements with or without its namespace; the lookup
helpers here do too.

Responses are built from plain ``(name, value)`` trees so handlers never
concatenate markup by hand, and every text node is escaped exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeAlias
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from plantcdn.errors import S3Error

__all__ = [
    "S3_NS",
    "Node",
    "child",
    "child_text",
    "children",
    "iso_timestamp",
    "local_name",
    "parse_xml",
    "read_body",
    "render",
]

#: The namespace of every S3 request and response document.
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_ACCEPTED_NS = ("", S3_NS)

#: A response element: its name (optionally followed by attributes, written by
#: the caller) and a text value, a list of child elements, or None (the element
#: is left out).  Booleans render as ``true``/``false``.
Node: TypeAlias = "tuple[str, str | int | bool | Iterable[Node] | None]"


# -- parsing ------------------------------------------------------------------


def read_body(source: IO[bytes], max_bytes: int) -> bytes:
    """At most *max_bytes* of a request body; one byte more is MalformedXML.

    Reading ``max_bytes + 1`` keeps memory bounded whatever the client sends
    (never a bare ``.read()``).
    """
    source.seek(0)
    data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise S3Error("MalformedXML")
    return data


def parse_xml(body: bytes, max_bytes: int) -> Element:
    """The root element of *body*; S3's ``MalformedXML`` for anything else.

    An empty body, a body over *max_bytes*, a DTD or entity declaration, or
    text that is not well-formed XML are all refused the same way.
    """
    if len(body) > max_bytes or not body.strip():
        raise S3Error("MalformedXML")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise S3Error("MalformedXML") from None
    if not isinstance(root, Element):
        raise S3Error("MalformedXML")
    return root


def local_name(element: Element) -> str | None:
    """The element's name without the namespace, or None for a foreign namespace."""
    tag = element.tag
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return name if namespace in _ACCEPTED_NS else None
    return tag


def children(element: Element, name: str) -> Iterator[Element]:
    """The direct children called *name* (in no namespace or S3's)."""
    for sub in element:
        if local_name(sub) == name:
            yield sub


def child(element: Element, name: str) -> Element | None:
    """The first direct child called *name*, or None."""
    return next(children(element, name), None)


def child_text(element: Element, name: str) -> str | None:
    """The text of the first child called *name* ("" when empty), or None when absent."""
    found = child(element, name)
    if found is None:
        return None
    return found.text or ""


# -- rendering ------------------------------------------------------------------


def iso_timestamp(seconds: float) -> str:
    """``2009-10-12T17:50:30.000Z``: the timestamp format of S3's XML bodies."""
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _render_into(out: list[str], node: Node) -> None:
    opening, value = node
    if value is None:
        return
    # A name may carry attributes after a space (``Grantee xsi:type="..."``):
    # they go in the opening tag only.
    name = opening.split(" ", 1)[0]
    if isinstance(value, str | int | bool):
        out.append(f"<{opening}>{_text(value)}</{name}>")
        return
    out.append(f"<{opening}>")
    for sub in value:
        _render_into(out, sub)
    out.append(f"</{name}>")


def render(root: str, content: Iterable[Node] | str = (), *, namespace: bool = True) -> bytes:
    """A complete S3 response document ``<root xmlns=S3_NS>content</root>`` in UTF-8."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    ns = f' xmlns="{S3_NS}"' if namespace else ""
    if isinstance(content, str):
        out.append(f"<{root}{ns}>{_text(content)}</{root}>")
    else:
        out.append(f"<{root}{ns}>")
        for node in content:
            _render_into(out, node)
        out.append(f"</{root}>")
    return "".join(out).encode("utf-8")
