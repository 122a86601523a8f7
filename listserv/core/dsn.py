"""RFC 3464 delivery-status parts, read directly so that each recipient keeps its Action
and Status (flufl.bounce only reports addresses). The address reported for a recipient is
its Original-Recipient when present, otherwise its Final-Recipient: the original is the
address the list sent to (before forwarding or alias expansion), so it is the one that
matches a member. Pure."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.header import Header
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import cast

from listserv.core.bounce_score import is_policy_rejection


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
        return is_policy_rejection(self.status)


def header(msg: email.message.Message, name: str) -> str:
    value = msg.get(name)
    if isinstance(value, Header):
        return str(value)
    return value if isinstance(value, str) else ""


def normalise(address: str) -> str | None:
    """Strip MTA decoration; lower-case only the domain, as local parts may be case-sensitive."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or not domain or any(c.isspace() for c in address):
        return None
    return f"{local}@{domain}"


@dataclass(frozen=True)
class DSN:
    recipients: tuple[BouncedRecipient, ...]
    is_report: bool  # multipart/report; report-type=delivery-status
    success_only: bool  # delivery-status blocks exist and none of them is a failure


_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


_XTEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


def read_dsn(msg: email.message.Message) -> DSN:
    is_report = (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )
    found: dict[str, BouncedRecipient] = {}
    saw_block = False
    for part in walk_parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _dsn_blocks(part):
            address = _recipient_field(header(block, "original-recipient")) or _recipient_field(
                header(block, "final-recipient")
            )
            if address is None:
                continue  # the per-message block, or a recipient we cannot read
            saw_block = True
            recipient = _classify(address, header(block, "action"), header(block, "status"))
            if recipient is not None:
                found[address] = _merge(found.get(address), recipient)
    return DSN(tuple(found.values()), is_report, saw_block and not found)


def walk_parts(msg: email.message.Message) -> Iterator[email.message.Message]:
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
                yield from walk_parts(sub)


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
    return normalise(parseaddr(address)[1] or address)


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
