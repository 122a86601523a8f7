"""Mailbox text rules for moving archives in and out: pure, line by line.

Reading accepts mboxo and mboxrd alike (one `>` taken off `>From ` lines, the mboxrd rule,
which is also what mboxo writers meant); writing is mboxrd, so any body line survives a
round trip. Pipermail's obfuscated authors (`alice at example.org`) are read back as
addresses.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from listserv.core.addresses import parse_mailbox

# A separator carries a time and a year (`From alice at example.org  Mon Jan  1 10:00:00
# 2024`, `From - Mon ...`, Takeout's `From 1234@xxx Mon ... +0000 2024`); a body line that
# merely starts with "From " (an unescaped mboxo body) rarely does, and must follow a blank.
_SEPARATOR_RE = re.compile(rb"^From \S.*\b\d{1,2}:\d\d(:\d\d)?\b.*\b\d{4}\s*$")
_QUOTED_FROM_RE = re.compile(rb"^>+From ")
_OBFUSCATED_RE = re.compile(r"^\s*([^\s@<>()\"]+) at ([^\s@<>()\"]+\.[^\s@<>()\"]+)\s*(.*)$")


def is_separator(line: bytes, after_blank: bool) -> bool:
    """Whether this line starts a new message of an mbox file."""
    return after_blank and _SEPARATOR_RE.match(line) is not None


def unescape(line: bytes) -> bytes:
    """A body line as written before mbox quoting (mboxrd: one `>` fewer on `>+From `)."""
    return line[1:] if _QUOTED_FROM_RE.match(line) else line


def escape(line: bytes) -> bytes:
    """A body line quoted for mboxrd (`From ` and `>+From ` get one more `>`)."""
    return b">" + line if line.startswith(b"From ") or _QUOTED_FROM_RE.match(line) else line


def separator(author: str | None, date: datetime | None) -> bytes:
    """The `From ` line of an exported message (asctime in UTC, as mbox readers expect)."""
    when = (date or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return f"From {author or 'MAILER-DAEMON'} {when.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()


def author_of(from_value: str) -> tuple[str, str | None]:
    """(name, address) of a From value, pipermail's `alice at example.org (Alice)` included."""
    name, address = parse_mailbox(from_value)
    if address is not None and "@" in address:
        return name, address
    found = _OBFUSCATED_RE.match(from_value)
    if found is None:
        return name, None
    shown = found[3].strip()
    if shown.startswith("(") and shown.endswith(")"):
        shown = shown[1:-1].strip()
    return shown, parse_mailbox(f"{found[1]}@{found[2]}")[1]


def content_id(raw: bytes) -> str:
    """The Message-ID given to a message that has none: a hash of its bytes (line endings
    aside), so importing the same file again finds it already stored."""
    digest = hashlib.sha256(raw.replace(b"\r\n", b"\n").strip()).hexdigest()[:40]
    return f"{digest}@sha256.invalid"


def mboxrd(author: str | None, date: datetime | None, raw: bytes) -> bytes:
    """One message as an mboxrd entry: what `archive export` and the web archive's thread
    download write."""
    lines = raw.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    return separator(author, date) + b"\n".join(map(escape, lines)) + b"\n\n"
