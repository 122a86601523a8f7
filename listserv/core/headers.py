"""Text out of untrusted bytes: only allow-listed charsets are decoded, header values are
read as the text they spell (RFC 2047 encoded words and raw UTF-8, RFC 6532), and every
value we copy becomes one clean line."""

from __future__ import annotations

import codecs
import email.header
import re
from email.policy import Compat32
from typing import Any

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


_MSGID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]+")


_SPACE_RE = re.compile(r"\s+")


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
