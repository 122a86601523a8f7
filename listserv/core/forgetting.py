"""What forgetting a person does to stored text: pure rewrites of bytes and strings.

An address is matched whatever its case (`Alice@Example.org` is the same mailbox to
every provider we know), and replaced by a token that names no one.
"""

from __future__ import annotations

import re

FORMER_MEMBER = "Former member"
REMOVED = "This message was removed at the author's request."
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FROM_LINE = re.compile(rb"(?im)^From:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def scrub(text: str, address: str, token: str) -> str:
    """`text` with every spelling of `address` replaced by `token`."""
    return re.sub(re.escape(address), token, text, flags=re.IGNORECASE)


def scrub_bytes(raw: bytes, address: str, token: str) -> bytes:
    """`raw` with every spelling of `address` (UTF-8 or ASCII) replaced by `token`."""
    return re.sub(re.escape(address.encode()), token.encode(), raw, flags=re.IGNORECASE)


def forgotten_post(raw: bytes, address: str, token: str, *, erase: bool) -> bytes:
    """The stored copy of the forgotten person's own post: their From replaced by the
    former member's, the address gone everywhere, and the body too when `erase`."""
    end = _HEADER_END.search(raw)
    head, body = (raw[: end.end()], raw[end.end() :]) if end else (raw, b"")
    newline = b"\r\n" if b"\r\n" in head else b"\n"
    head = _FROM_LINE.sub(f"From: {FORMER_MEMBER} <{token}>".encode(), head, count=1)
    if erase:
        head = re.sub(rb"(?im)^Content-Transfer-Encoding:[^\r\n]*\r?\n", b"", head)
        head = re.sub(rb"(?im)^Content-Type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n", b"", head)
        head = head.rstrip(b"\r\n") + newline
        head += b"Content-Type: text/plain; charset=utf-8" + newline * 2
        body = REMOVED.encode() + newline
    return scrub_bytes(head + body, address, token)
