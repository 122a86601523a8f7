"""Raw bytes into an immutable `Parsed` message, or a `Malformed` verdict.

The standard `email` package is the parser, but it has traps on hostile input: the rich
header policy is quadratic on crafted parameter lists and the feed parser recurses once per
MIME level. So limits are checked on the raw bytes first (`mime`), the message is parsed
with the lazy `compat32` policy, MIME is walked with an explicit stack (`mime.walk`), and
only allow-listed charsets are ever decoded (`headers`).
"""

from __future__ import annotations

import email
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from listserv.config import LimitsConfig
from listserv.core.addresses import parse_mailbox
from listserv.core.headers import POLICY, decode_bytes, decode_header_value, message_ids, one_line
from listserv.core.mime import Malformed, check_header_block, check_structure, walk

# inscriptis' default profile indents nested <div>s as a browser would show their
# margins; the strict one keeps text flush left, as a mail reader expects.
_HTML_AS_TEXT = ParserConfig(css=CSS_PROFILES["strict"])


@dataclass(frozen=True)
class Parsed:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    author_address: str | None
    author_name: str
    subject: str
    date: datetime | None
    text: str
    headers: tuple[tuple[str, str], ...]
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """The first top-level header of that name, unfolded, or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def parent_candidates(self) -> tuple[str, ...]:
        """Ids that may name the parent: In-Reply-To first, then References newest first."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("content-disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment" or (disposition != "inline" and bool(part.get_filename()))


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return decode_bytes(data, part.get_content_charset()).replace("\r\n", "\n")


def body_text(parts: list[Message]) -> str:
    """The readable text: inline text/plain parts joined; HTML as text when there is none.

    A multipart whose boundary never appears is left unsplit by the parser; its payload is
    read as plain text rather than lost.
    """
    plain: list[str] = []
    html: list[str] = []
    for part in parts:
        if part.is_multipart() or _is_attachment(part):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" or ctype.startswith("multipart/"):
            text = _part_text(part).strip("\n")
            if text.strip():
                plain.append(text)
        elif ctype == "text/html":
            text = get_text(_part_text(part), _HTML_AS_TEXT).strip()
            if text:
                html.append(text)
    return "\n\n".join(plain or html)


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse(raw: bytes, limits: LimitsConfig) -> Parsed | Malformed:
    """Parse untrusted bytes within `limits`; never raises on bad input.

    Whatever fails while parsing (a RecursionError from a limit set past what the parser
    can recurse, a bug met by odd bytes) is a verdict on the message: the same bytes would
    fail on every retry, so it is refused, never answered "try again".
    """
    # Blank lines before the first header would turn every header into body.
    raw = raw.lstrip(b"\r\n")
    try:
        problem = check_header_block(raw, limits) or check_structure(raw, limits)
        return Malformed(problem) if problem else _parse_checked(raw, limits)
    except Exception as exc:  # RecursionError included
        return Malformed(f"unparseable ({type(exc).__name__})")


def _parse_checked(raw: bytes, limits: LimitsConfig) -> Parsed | Malformed:
    msg = email.message_from_bytes(raw, policy=POLICY)
    parts = walk(msg, limits)
    if isinstance(parts, Malformed):
        return parts
    headers = tuple((str(k), one_line(str(v))) for k, v in msg.items())
    author_name, author_address = parse_mailbox(decode_header_value(msg.get("from")))
    if author_address is None:
        sender = msg.get("sender") or msg.get("reply-to")
        author_name, author_address = parse_mailbox(decode_header_value(sender))
    mids = message_ids(msg.get("message-id"))
    defects = tuple(type(d).__name__ for part in parts for d in part.defects)
    return Parsed(
        message_id=mids[0] if mids else None,
        in_reply_to=message_ids(msg.get("in-reply-to"))[:1],
        references=message_ids(msg.get("references")),
        author_address=author_address,
        author_name=author_name,
        subject=decode_header_value(msg.get("subject")),
        date=_date(msg.get("date")),
        text=body_text(parts),
        headers=headers,
        defects=defects,
    )
