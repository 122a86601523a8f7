"""A post's text as HTML: escaped, links made clickable, addresses hidden, quotes folded.

Nothing of a message is ever rendered as markup: every character is escaped, and only the
links we find in the text become <a> elements (http and https only). Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

_URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.I)
_TRAILING = ".,;:!?)]}'\""
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REL = "nofollow ugc noopener"
# A member's personal unsubscribe link or leave address, quoted from their copy's footer in a
# reply: whoever reads it could unsubscribe them, so it is never shown.
_PERSONAL_TOKEN_RE = re.compile(r"(/u/|-leave\+)u-[A-Za-z0-9_-]+", re.I)


def hide_addresses(text: str, allowed: frozenset[str] = frozenset()) -> str:
    """Every email address but the list's own shown as its local part and "@…", and every
    personal unsubscribe token as "…"."""
    text = _PERSONAL_TOKEN_RE.sub(lambda m: m[1] + "…", text)

    def mask(match: re.Match[str]) -> str:
        address = match[0]
        if address.lower() in allowed:
            return address
        return address.partition("@")[0] + "@…"

    return _EMAIL_RE.sub(mask, text)


def linkify(text: str) -> Markup:
    """Escaped text with its http(s) links as <a rel="nofollow ugc noopener">."""
    out: list[str] = []
    at = 0
    for match in _URL_RE.finditer(text):
        url = match[0].rstrip(_TRAILING)
        end = match.start() + len(url)
        out += [
            str(escape(text[at : match.start()])),
            f'<a href="{escape(url)}" rel="{REL}">{escape(url)}</a>',
        ]
        at = end
    out.append(str(escape(text[at:])))
    return Markup("".join(out))


@dataclass(frozen=True)
class Body:
    """What a reader sees of a post: the author's words, and the rest folded away."""

    shown: Markup
    folded: Markup | None
    whole: bool  # the folded part repeats the shown text (the whole message)


def body(text: str, new_text: str, allowed: frozenset[str] = frozenset()) -> Body:
    """Split a post into the author's own words and the quoted text and signature after them."""
    text = hide_addresses(text.strip("\n"), allowed)
    own = hide_addresses(new_text.strip("\n"), allowed)
    if not own.strip() or own == text:
        return Body(linkify(text), None, False)
    if text.startswith(own):
        rest = text[len(own) :].strip("\n")
        return Body(linkify(own), linkify(rest) if rest.strip() else None, False)
    return Body(linkify(own), linkify(text), True)


def when(moment: datetime, timezone: str) -> str:
    """A date as people write it: "18 Sep 2019, 10:15", in the list's time zone."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local.day} {local:%b %Y, %H:%M}"


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def author(name: str, address: str) -> str:
    """How a person is named on a page: their display name (many mail programs make that
    the address itself: hidden like one in the text), else their address's local part."""
    return hide_addresses(name.strip()) or address.partition("@")[0]


def size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / 1024 / 1024:.1f} MB"
