"""Bounces written as prose, for the many mail systems that send no RFC 3464 report:
flufl.bounce's detectors, then a conservative scan of the notification text for an address
next to an SMTP reply with an enhanced status code ("550 5.1.1"). Prose can be a person's
(a reply quoting a bounce), so `parse_bounce` reads it only on mail that
`looks_like_mta_report`. Pure."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from collections.abc import Iterable, Iterator
from email.utils import getaddresses

from flufl.bounce import all_failures

from listserv.core.dsn import header, normalise, walk_parts


def looks_like_mta_report(msg: email.message.Message, envelope_sender: str | None) -> bool:
    """Whether the message was written by a mail system rather than a person or responder:
    a report or delivery-status part, the null or a mailer-daemon sender, RFC 3834's
    `auto-generated`, or Exim's own X-Failed-Recipients."""
    if envelope_sender == "" or header(msg, "return-path").strip() == "<>":
        return True
    if msg.get_content_type() == "multipart/report" or msg.get("x-failed-recipients"):
        return True
    if header(msg, "auto-submitted").strip().lower().startswith("auto-generated"):
        return True
    if any(part.get_content_type() == "message/delivery-status" for part in walk_parts(msg)):
        return True
    for name, address in getaddresses([header(msg, "from")]):
        local = address.partition("@")[0].lower()
        if local in {"mailer-daemon", "mail-daemon", "postmaster"}:
            return True
        if "mail delivery" in name.lower() or "mailer-daemon" in name.lower():
            return True
    return False


def flufl_failures(msg: email.message.Message) -> tuple[frozenset[str], frozenset[str]]:
    """flufl.bounce's (temporary, permanent) addresses, normalised; empty if it breaks."""
    try:
        temporary, permanent = all_failures(msg)
    except IndexError:
        # Its Yale detector indexes getaddresses()[0], which is empty when a
        # single-part message has no (parseable) From; later detectors never run.
        return frozenset(), frozenset()
    except AttributeError:
        # Detectors call str methods on header values; compat32 gives an
        # email.header.Header for a header with raw 8-bit bytes (only reached when the
        # message could not be re-parsed through _StrHeaderMessage).
        return frozenset(), frozenset()
    except (TypeError, ValueError):
        # Message.get_payload() decodes 8-bit text with the part's charset parameter:
        # an RFC 2231 one arrives as a tuple (TypeError), one with a NUL is a ValueError.
        return frozenset(), frozenset()
    return _decoded(temporary), _decoded(permanent)


def _decoded(addresses: Iterable[bytes]) -> frozenset[str]:
    result = set()
    for raw in addresses:
        address = normalise(raw.decode("ascii", "replace"))
        if address is not None:
            result.add(address)
    return frozenset(result)


# An SMTP reply code, then an RFC 3463 enhanced status: "550 5.1.1", "550-5.7.1", "#550 5.1.1".
_SMTP_REPLY = re.compile(r"(?<![\w.])[45]\d\d[ \t-]+#?([45]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")


_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


# Where a returned copy of the original message starts inside the notification text.
_RETURNED_COPY = re.compile(r"^(?:received|return-path|message-id|dkim-signature):", re.I | re.M)


_NOT_RECIPIENTS = frozenset({"postmaster", "mailer-daemon", "mail-daemon"})


def statuses_in_text(msg: email.message.Message) -> dict[str, str]:
    """Addresses that share a paragraph with an SMTP error, mapped to its status."""
    own = {
        address
        for _, found in getaddresses(
            [header(msg, name) for name in ("from", "to", "delivered-to", "x-original-to")]
        )
        if (address := normalise(found)) is not None
    }
    statuses: dict[str, str] = {}
    for text in _notification_texts(msg):
        cut = _RETURNED_COPY.search(text)
        if cut:
            text = text[: cut.start()]
        for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
            replies = [(m.start(), m.group(1)) for m in _SMTP_REPLY.finditer(paragraph)]
            if not replies:
                continue
            for found in _ADDRESS.finditer(paragraph):
                address = normalise(found.group().strip("."))
                if (
                    address is None
                    or address in own
                    or address.partition("@")[0].lower() in _NOT_RECIPIENTS
                ):
                    continue
                # Exim and others list "address, then its SMTP error" per recipient.
                after = [status for start, status in replies if start >= found.start()]
                statuses.setdefault(address, after[0] if after else replies[-1][1])
    return statuses


def _notification_texts(msg: email.message.Message) -> Iterator[str]:
    for part in walk_parts(msg):
        if part.get_content_type() != "text/plain" or part.is_multipart():
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        charset = part.get_content_charset() or "us-ascii"
        try:
            text = raw.decode(charset, "replace")
        except (LookupError, ValueError):  # unknown charset name, or one with a NUL in it
            text = raw.decode("latin-1")
        yield text
