"""Limits on untrusted MIME structure, checked before rich parsing and while walking.

The standard `email` package's rich header policy is quadratic on crafted parameter lists
and its feed parser recurses once per MIME level. So the header block and the MIME
structure are measured on the raw bytes first (every spelling of a boundary, RFC 2231's
included), and parts are walked with an explicit stack.
"""

from __future__ import annotations

import email.parser
import re
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32

from listserv.config import LimitsConfig


@dataclass(frozen=True)
class Malformed:
    """A message refused before or during parsing; `reason` is for the log and the reply."""

    reason: str


def check_header_block(raw: bytes, limits: LimitsConfig) -> str | None:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    header = raw if end < 0 else raw[:end]
    if len(header) > limits.max_header_bytes:
        return f"header section over {limits.max_header_bytes} bytes"
    field_len = 0
    for line in header.splitlines():
        field_len = field_len + len(line) if line[:1] in (b" ", b"\t") else len(line)
        if field_len > limits.max_header_field_bytes:
            return f"a header field over {limits.max_header_field_bytes} bytes"
    return None


_LINE_END = r"(?:\r\n|\r(?!\n)|\n)"  # the feed parser's line ends, a lone CR included


_BLANK_LINE = re.compile(_LINE_END * 2)


def _head_and_body(text: str, start: int, end: int) -> tuple[Message, int]:
    """The headers of the part text[start:end], read by the parser itself (so every
    spelling of a parameter is seen as the parser sees it), and where its body starts;
    the body is not read line by line."""
    if text.startswith(("\r", "\n"), start, end):  # no headers: the body is what follows
        return Message(), start + (2 if text.startswith("\r\n", start, end) else 1)
    blank = _BLANK_LINE.search(text, start, end)
    head_end, body = (end, end) if blank is None else (blank.start(), blank.end())
    msg = email.parser.Parser(policy=compat32).parsestr(text[start:head_end],
                                                         headersonly=True)
    early = msg.get_payload()  # the headers ended at a line that is no header
    return msg, max(start, head_end - len(early)) if isinstance(early, str) and early else body


def _split_multipart(text: str, start: int, end: int, boundary: str,
                     most: int) -> list[tuple[int, int]]:
    """The parts of text[start:end] between the delimiter lines of `boundary`, as the feed
    parser splits them (no preamble, no epilogue; a part an outer delimiter cuts short ends
    there), at most `most` + 1 of them."""
    # A literal first, so the regex engine skips ahead; the line start is checked apart.
    delimiter = re.compile("--" + re.escape(boundary) + r"(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
    parts: list[tuple[int, int]] = []
    begin: int | None = None
    for match in delimiter.finditer(text, start, end):
        if match.start() > start and text[match.start() - 1] not in "\r\n":
            continue
        if begin is not None:
            parts.append((begin, match.start()))
        if match.group(1) or len(parts) > most:  # the close delimiter: the rest is epilogue
            return parts
        begin = match.end()
    if begin is not None:
        parts.append((begin, end))
    return parts


def _blocks(text: str, start: int, end: int, most: int) -> list[tuple[int, int]]:
    """The blocks of headers of a message/delivery-status body, at most `most` + 1."""
    blocks: list[tuple[int, int]] = []
    for blank in _BLANK_LINE.finditer(text, start, end):
        if blank.start() > start:
            blocks.append((start, blank.start()))
        if len(blocks) > most:
            return blocks
        start = blank.end()
    if start < end:
        blocks.append((start, end))
    return blocks


def check_structure(raw: bytes, limits: LimitsConfig) -> str | None:
    """Bound MIME nesting and parts before the recursive feed parser sees the message.

    The structure is walked with an explicit stack, each part's headers read by the parser
    itself: any spelling of a boundary (RFC 2231 `boundary*=`, `boundary*0=` ...) and the
    parts a multipart/digest makes messages by default count, and words in a body do not.
    Parts are spans of the one decoded text, so no level copies what it holds.
    """
    lowered = raw.lower()
    if b"boundary" not in lowered and b"message/" not in lowered:
        return None  # a single part, as most posts are: nothing to walk
    text = raw.decode("ascii", "surrogateescape")  # as the parser decodes it
    most = limits.max_mime_parts
    stack: list[tuple[int, int, int, str]] = [(0, len(text), 0, "text/plain")]
    seen = 0
    while stack:
        start, end, depth, default_type = stack.pop()
        if depth > limits.max_mime_depth:
            return f"MIME nested more than {limits.max_mime_depth} levels"
        seen += 1
        if seen > most:
            return f"more than {most} MIME parts"
        msg, body = _head_and_body(text, start, end)
        msg.set_default_type(default_type)
        ctype = msg.get_content_type()
        if ctype == "message/delivery-status":  # blocks of headers, each a message
            stack.extend((*block, depth + 1, "text/plain")
                         for block in _blocks(text, body, end, most))
        elif msg.get_content_maintype() == "message":
            stack.append((body, end, depth + 1, "text/plain"))
        elif msg.get_content_maintype() == "multipart":
            boundary = msg.get_boundary()
            inner = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            if boundary:
                stack.extend((*part, depth + 1, inner)
                             for part in _split_multipart(text, body, end, boundary, most))
    return None


def walk(msg: Message, limits: LimitsConfig) -> list[Message] | Malformed:
    """All parts, depth first, with an explicit stack and the part and depth limits."""
    parts: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if depth > limits.max_mime_depth:
            return Malformed(f"MIME nested more than {limits.max_mime_depth} levels")
        for name in ("content-type", "content-disposition"):
            value = part.get(name)
            if value is None:
                continue
            value = str(value)
            if len(value) > limits.max_mime_header_bytes:
                return Malformed(f"{name} over {limits.max_mime_header_bytes} bytes")
            if value.count(";") > limits.max_mime_params:
                return Malformed(f"{name} with more than {limits.max_mime_params} parameters")
        parts.append(part)
        if len(parts) > limits.max_mime_parts:
            return Malformed(f"more than {limits.max_mime_parts} MIME parts")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((child, depth + 1) for child in reversed(payload))
    return parts
