"""Raw bytes into an immutable `Parsed` message, or a `Malformed` verdict.

The standard `email` package is the parser, but it has traps on hostile input: the rich
header policy is quadratic on crafted parameter lists and the feed parser recurses once per
MIME level. So limits are checked on the raw bytes first, the message is parsed with the
lazy `compat32` policy, MIME is walked with an explicit stack, and only allow-listed
charsets are ever decoded.
"""

from __future__ import annotations

import codecs
import email
import email.header
import email.parser
import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.policy import Compat32, compat32
from typing import Any

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from listserv.config import LimitsConfig
from listserv.core.addresses import parse_mailbox

# Decoders we trust: they map bytes to text without inventing markup (unlike utf-7 or
# unicode_escape). Keys are Python's canonical codec names.
SAFE_CHARSETS = frozenset(
    codecs.lookup(name).name
    for name in (
        "utf-8", "ascii", "latin-1", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5",
        "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-9", "iso8859-10", "iso8859-13",
        "iso8859-14", "iso8859-15", "iso8859-16", "cp1250", "cp1251", "cp1252", "cp1253",
        "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "koi8-r", "koi8-u", "cp437",
        "cp850", "cp866", "mac-roman", "gb2312", "gbk", "gb18030", "big5", "big5hkscs",
        "euc-jp", "shift_jis", "cp932", "iso2022_jp", "iso2022_jp_2", "euc-kr", "cp949",
        "tis-620", "utf-16", "utf-16-le", "utf-16-be",
    )
)
# Labels mail programs use that Python does not know, mapped to a decoder it does.
CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-sjis": "shift_jis",
    "x-gbk": "gbk",
    "iso-2022-jp-ms": "iso2022_jp_2",
    "unicode-1-1-utf-7": "",
    "utf-7": "",
}

# inscriptis' default profile indents nested <div>s as a browser would show their
# margins; the strict one keeps text flush left, as a mail reader expects.
_HTML_AS_TEXT = ParserConfig(css=CSS_PROFILES["strict"])

_MSGID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Malformed:
    """A message refused before or during parsing; `reason` is for the log and the reply."""

    reason: str


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


def safe_codec(charset: str | None) -> str | None:
    """The codec to decode `charset` with, or None when it is unknown or not allow-listed."""
    if not charset:
        return None
    label = charset.strip().strip('"').lower()
    label = CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return name if name in SAFE_CHARSETS else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with an allow-listed codec; otherwise UTF-8, then Latin-1, never failing.

    8-bit data that is valid UTF-8 is read as UTF-8 whatever its label says: mail programs
    mislabel UTF-8 often, while text in another 8-bit charset is almost never valid UTF-8.
    """
    if not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    codec = safe_codec(charset)
    if codec:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace") if charset else data.decode("latin-1")


def one_line(text: str) -> str:
    """One clean header line: raw 8-bit bytes made valid text, control characters (an encoded
    CR/LF included) collapsed."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _SPACE_RE.sub(" ", _CTRL_RE.sub(" ", text)).strip()


class Utf8Headers(Compat32):
    """compat32, except that a header holding raw 8-bit bytes (RFC 6532 lets clients write
    UTF-8 straight into headers) reads as the text those bytes spell, instead of a Header
    whose str() is U+FFFD: UTF-8, or Latin-1 when they are not valid UTF-8."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if value.isascii():
            return value
        try:
            data = value.encode("ascii", "surrogateescape")  # the bytes as received
        except UnicodeEncodeError:  # text set by our own code, not bytes from the wire
            return value
        return decode_bytes(data, None)


# The policy every received message is parsed with.
POLICY = Utf8Headers()

# A word holding raw non-ASCII text: never part of an RFC 2047 encoded word.
_RAW_WORD_RE = re.compile(r"(\S*[^\x00-\x7f]\S*)")


def decode_header_value(value: str | None) -> str:
    """RFC 2047 encoded words to text, with allow-listed charsets only, as one line; raw
    UTF-8 words (RFC 6532) beside them are text already and stay exactly as they are."""
    if not value:
        return ""
    pieces = _RAW_WORD_RE.split(one_line(str(value)))
    return one_line("".join(piece if i % 2 else _decode_words(piece)
                            for i, piece in enumerate(pieces)))


def _decode_words(text: str) -> str:
    """The encoded words of an ASCII stretch decoded, its surrounding spaces kept."""
    value = text.strip()
    if not value:
        return text
    lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    try:
        chunks = email.header.decode_header(value)
    except (ValueError, LookupError, AssertionError):
        return text
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            if charset is None:
                out.append(chunk.decode("utf-8", errors="replace"))
            else:
                out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return lead + "".join(out).replace("\ufffd\ufffd", "\ufffd") + trail


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every `<id@host>` in a header, in order, without brackets."""
    if not value:
        return ()
    return tuple(dict.fromkeys(_MSGID_RE.findall(str(value))))


def _check_header_block(raw: bytes, limits: LimitsConfig) -> str | None:
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


def _check_structure(raw: bytes, limits: LimitsConfig) -> str | None:
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
        problem = _check_header_block(raw, limits) or _check_structure(raw, limits)
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
