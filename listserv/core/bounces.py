"""Recognise delivery status notifications (members' bounce scores: `core.bounce_score`).

Pure: no I/O and no clock.  Callers pass a parsed message.

Detection runs in three layers, most trustworthy first:

1. RFC 3464 ``message/delivery-status`` blocks, read here directly so that each
   recipient keeps its Action and Status (flufl.bounce only reports addresses).
2. flufl.bounce's detectors, for the many MTAs that send prose instead of a DSN.
3. A last, conservative scan of the notification text for an address next to an
   SMTP reply with an enhanced status code ("550 5.1.1"); flufl.bounce knows no
   detector for several current providers (Office 365, OpenSMTPD, Yahoo's plain text).

Layers 2 and 3 read prose, and prose can be a person's: a reply quoting a bounce
("> To: bob@example.net") matches flufl.bounce's patterns as well as the bounce did.
So they run only on mail that looks machine-made (see `_looks_like_mta_report`).

The address reported for a DSN recipient is its Original-Recipient when present,
otherwise its Final-Recipient: the original is the address the list sent to
(before forwarding or alias expansion), so it is the one that matches a member.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from email.errors import HeaderParseError
from email.header import Header
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import cast

from flufl.bounce import all_failures

__all__ = [
    "BounceReport",
    "BouncedRecipient",
    "parse_bounce",
]


@dataclass(frozen=True)
class BouncedRecipient:
    address: str  # local part as reported, domain lower-cased
    permanent: bool
    action: str | None  # "failed", "delayed", ... from the DSN when known
    status: str | None  # "5.1.1" etc. when known

    @property
    def policy(self) -> bool:
        """Rejected by the receiver's policy (spam, DMARC, blocklist), not a dead mailbox.

        Such bounces say nothing about whether the address works, so they must not
        count toward the member's bounce score.
        """
        return self.status is not None and self.status.startswith(("5.7.", "4.7."))


@dataclass(frozen=True)
class BounceReport:
    # Empty when the message is certainly a failure report but names no recipient we
    # could read: the caller should neither post it nor score anyone for it.
    recipients: tuple[BouncedRecipient, ...]


def parse_bounce(
    msg: email.message.Message, envelope_sender: str | None = None
) -> BounceReport | None:
    """The recipients a delivery failure reports, or None for any other message.

    ``envelope_sender`` is the SMTP MAIL FROM when known ("" for the null sender that
    MTAs use for bounces). Accepts messages parsed with ``email.policy.compat32`` or
    ``email.policy.default``. Never raises on malformed input; at worst it returns fewer
    recipients.
    """
    compat = _as_compat32(msg)
    if compat is None:
        return None
    dsn = _read_dsn(compat)
    if dsn.recipients:
        return BounceReport(dsn.recipients)
    if dsn.success_only:
        # A positive DSN ("delivered", "relayed", "expanded") is not a bounce, and
        # the prose detectors below could misread its text.
        return None
    if not _looks_like_mta_report(compat, envelope_sender):
        return None
    text_statuses = _statuses_in_text(compat)
    temporary, permanent = _flufl_failures(compat)
    if temporary or permanent:
        found = [
            BouncedRecipient(address, True, None, text_statuses.get(address))
            for address in sorted(permanent)
        ] + [
            BouncedRecipient(address, False, None, text_statuses.get(address))
            for address in sorted(temporary - permanent)
        ]
        return BounceReport(tuple(found))
    if text_statuses:
        return BounceReport(
            tuple(
                BouncedRecipient(address, status.startswith("5"), None, status)
                for address, status in text_statuses.items()
            )
        )
    if dsn.is_report:
        return BounceReport(())
    return None


# --- message normalisation -------------------------------------------------------------


class _StrHeaderMessage(email.message.Message):
    """compat32 message whose header values are always ``str``.

    compat32 returns an ``email.header.Header`` for a header holding raw 8-bit bytes,
    and several flufl.bounce detectors then fail calling ``.lower()`` on it (Mailman's
    own Message class papers over this the same way).
    """

    def get(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        value = super().get(name, failobj)
        return str(value) if isinstance(value, Header) else value

    def __getitem__(self, name: str) -> object:  # type: ignore[override]
        return self.get(name)

    def get_all(self, name: str, failobj: object = None) -> object:  # type: ignore[override]
        values = super().get_all(name, failobj)
        if values is failobj:
            return failobj
        return [str(value) if isinstance(value, Header) else value for value in values]


# Two ways to write a message back out; each copes with inputs the other rejects.
# compat32's generator re-encodes header values and raises HeaderParseError on one that
# seems to hide another header.  The verbatim policy writes values as received, but the
# generator reads the message through it, so malformed headers meet the stdlib's
# default-policy parser, which raises IndexError, AttributeError or ValueError.
_COMPAT32_8BIT = compat32.clone(max_line_length=0, cte_type="8bit")
_VERBATIM = email.policy.default.clone(refold_source="none", cte_type="8bit")


def _as_compat32(msg: email.message.Message) -> email.message.Message | None:
    """Re-parse ``msg`` as the compat32 message flufl.bounce was written against.

    Reading a default-policy message's headers runs the stdlib's header parser, which
    raises on some malformed addresses from deep inside the detectors; compat32 never
    parses header values.  The copy also returns headers as ``str`` throughout.
    """
    own_policy_first = not isinstance(msg.policy, email.policy.EmailPolicy)
    policies = (_COMPAT32_8BIT, _VERBATIM) if own_policy_first else (_VERBATIM, _COMPAT32_8BIT)
    for policy in policies:
        try:
            data = msg.as_bytes(policy=policy)
        except (HeaderParseError, IndexError, AttributeError, ValueError):
            # ValueError includes UnicodeEncodeError: the generator cannot write back a
            # defective multipart (no usable boundary) whose body holds 8-bit bytes.
            continue
        return email.message_from_bytes(data, _class=_StrHeaderMessage, policy=compat32)
    # Last resort: a compat32 message can still be read as it is (the detectors'
    # trouble with its Header values is caught in _flufl_failures).
    return msg if own_policy_first else None


def _header(msg: email.message.Message, name: str) -> str:
    value = msg.get(name)
    if isinstance(value, Header):
        return str(value)
    return value if isinstance(value, str) else ""


def _normalise(address: str) -> str | None:
    """Strip MTA decoration; lower-case only the domain, as local parts may be case-sensitive."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or not domain or any(c.isspace() for c in address):
        return None
    return f"{local}@{domain}"


# --- RFC 3464 delivery-status parts ----------------------------------------------------


@dataclass(frozen=True)
class _DSN:
    recipients: tuple[BouncedRecipient, ...]
    is_report: bool  # multipart/report; report-type=delivery-status
    success_only: bool  # delivery-status blocks exist and none of them is a failure


_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_XTEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


def _read_dsn(msg: email.message.Message) -> _DSN:
    is_report = (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )
    found: dict[str, BouncedRecipient] = {}
    saw_block = False
    for part in _parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _dsn_blocks(part):
            address = _recipient_field(_header(block, "original-recipient")) or _recipient_field(
                _header(block, "final-recipient")
            )
            if address is None:
                continue  # the per-message block, or a recipient we cannot read
            saw_block = True
            recipient = _classify(address, _header(block, "action"), _header(block, "status"))
            if recipient is not None:
                found[address] = _merge(found.get(address), recipient)
    return _DSN(tuple(found.values()), is_report, saw_block and not found)


def _parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """Every part, not descending into returned messages (their DSNs are not ours)."""
    yield msg
    if (
        msg.get_content_maintype() == "message"
        and msg.get_content_type() != "message/delivery-status"
    ):
        return
    # Only a multipart's payload is safe to fetch undecoded: a leaf's str payload is
    # decoded with its charset parameter, which raises TypeError when RFC 2231-encoded.
    if msg.get_content_maintype() == "multipart" and msg.is_multipart():
        for sub in cast(list[object], msg.get_payload()):
            if isinstance(sub, email.message.Message):
                yield from _parts(sub)


def _dsn_blocks(part: email.message.Message) -> list[email.message.Message]:
    if part.is_multipart():
        blocks = cast(list[object], part.get_payload())
        return [block for block in blocks if isinstance(block, email.message.Message)]
    # A hand-built part arrives as one string, not header blocks.
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return []
    text = raw.decode("utf-8", "replace")
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser(policy=compat32).parsestr(block) for block in blocks]


def _recipient_field(value: str) -> str | None:
    """The address of a Final-/Original-Recipient field ("rfc822; user@example.org")."""
    if not value.strip():
        return None
    kind, sep, address = value.partition(";")
    if not sep:
        # Seen in the wild: a bare "<user@example.org>" with no address type.
        kind, address = "rfc822", value
    kind = kind.strip().lower()
    if kind == "utf-8":  # RFC 6533: non-ASCII arrives as \x{HEX}
        address = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), address)
    elif kind != "rfc822":
        return None
    address = " ".join(address.split())
    return _normalise(parseaddr(address)[1] or address)


def _classify(address: str, action_field: str, status_field: str) -> BouncedRecipient | None:
    """Turn one per-recipient block into a failure, or None if delivery succeeded."""
    action = action_field.strip().split(maxsplit=1)[0].lower() if action_field.strip() else None
    match = _STATUS.search(status_field)
    status = match.group(1) if match else None
    if action in _SUCCESS_ACTIONS:
        return None
    if action is not None and action.startswith(("fail", "error")):  # "error": OpenSMTPD
        # The MTA has given up even if the status class is 4: this copy is lost.
        return BouncedRecipient(
            address, True, "failed" if action.startswith("fail") else action, status
        )
    if action == "delayed":
        return BouncedRecipient(address, False, action, status)
    # No usable Action: fall back on the status class.
    if status is not None and status[0] in "45":
        return BouncedRecipient(address, status[0] == "5", action, status)
    return None


def _merge(old: BouncedRecipient | None, new: BouncedRecipient) -> BouncedRecipient:
    """One entry per address; a permanent failure outweighs a delay for the same address."""
    if old is None or (new.permanent and not old.permanent):
        return new
    if old.status is None and new.status is not None and old.permanent == new.permanent:
        return replace(old, status=new.status)
    return old


def _looks_like_mta_report(msg: email.message.Message, envelope_sender: str | None) -> bool:
    """Whether the message was written by a mail system rather than a person or responder:
    a report or delivery-status part, the null or a mailer-daemon sender, RFC 3834's
    `auto-generated`, or Exim's own X-Failed-Recipients."""
    if envelope_sender == "" or _header(msg, "return-path").strip() == "<>":
        return True
    if msg.get_content_type() == "multipart/report" or msg.get("x-failed-recipients"):
        return True
    if _header(msg, "auto-submitted").strip().lower().startswith("auto-generated"):
        return True
    if any(part.get_content_type() == "message/delivery-status" for part in _parts(msg)):
        return True
    for name, address in getaddresses([_header(msg, "from")]):
        local = address.partition("@")[0].lower()
        if local in {"mailer-daemon", "mail-daemon", "postmaster"}:
            return True
        if "mail delivery" in name.lower() or "mailer-daemon" in name.lower():
            return True
    return False


# --- flufl.bounce ----------------------------------------------------------------------


def _flufl_failures(msg: email.message.Message) -> tuple[frozenset[str], frozenset[str]]:
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
        address = _normalise(raw.decode("ascii", "replace"))
        if address is not None:
            result.add(address)
    return frozenset(result)


# --- notification text ----------------------------------------------------------------

# An SMTP reply code, then an RFC 3463 enhanced status: "550 5.1.1", "550-5.7.1", "#550 5.1.1".
_SMTP_REPLY = re.compile(r"(?<![\w.])[45]\d\d[ \t-]+#?([45]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Where a returned copy of the original message starts inside the notification text.
_RETURNED_COPY = re.compile(r"^(?:received|return-path|message-id|dkim-signature):", re.I | re.M)
_NOT_RECIPIENTS = frozenset({"postmaster", "mailer-daemon", "mail-daemon"})


def _statuses_in_text(msg: email.message.Message) -> dict[str, str]:
    """Addresses that share a paragraph with an SMTP error, mapped to its status."""
    own = {
        address
        for _, found in getaddresses(
            [_header(msg, name) for name in ("from", "to", "delivered-to", "x-original-to")]
        )
        if (address := _normalise(found)) is not None
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
                address = _normalise(found.group().strip("."))
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
    for part in _parts(msg):
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
