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


_ADDRESS = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ID_HEADERS = re.compile(rb"(?i)^(message-id|in-reply-to|references|content-id)\s*:")
ADDRESS_REMOVED = b"(address removed)"


def only_theirs(raw: bytes, address: str, domain: str) -> bytes:
    """A copy of the person's own mail for their data export that names no one else:
    every address but theirs and the list's own (on `domain`) is removed; message ids
    (which look like addresses) stay, so threads still hold together."""
    keep = address.lower().encode()
    ours = b"@" + domain.lower().encode()

    def removed(found: re.Match[bytes]) -> bytes:
        value = found[0].lower()
        return found[0] if value == keep or value.endswith(ours) else ADDRESS_REMOVED

    lines = raw.splitlines(keepends=True)
    out, in_ids, in_head = [], False, True
    for line in lines:
        if in_head and not line.strip():
            in_head = False
        elif in_head and line[:1] not in (b" ", b"\t"):
            in_ids = _ID_HEADERS.match(line) is not None
        out.append(line if in_head and in_ids else _ADDRESS.sub(removed, line))
    return b"".join(out)
