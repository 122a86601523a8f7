"""Spam complaints from mail providers: ARF feedback reports (RFC 5965) into values.

A report is `multipart/report; report-type=feedback-report` with a human part, a
`message/feedback-report` part (Feedback-Type, Original-Rcpt-To...) and the reported
message or its headers. Anyone can write such a report, with the list's public List-Id and
any Original-Rcpt-To they like: only what we signed into one member's copy proves whose
copy was reported, that is the personal token of List-Unsubscribe (URL or mailto) or the
signed VERP envelope sender in its Return-Path. Original-Rcpt-To is kept for the log only.
Pure; the message is only read after the size and nesting limits passed (the caller's
`core.message.parse`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from listserv.core.addresses import try_normalize

# The membership token as it appears in our List-Unsubscribe URL and -leave address.
_TOKEN_RE = re.compile(r"(?:/u/|-leave\+)(u-\d{1,18}-[0-9a-z]{1,13}-[a-z2-7]{16})", re.I)
_LIST_ID_RE = re.compile(r"<([^<>\s]+)>\s*$")
# A VERP envelope sender as the reported copy's Return-Path shows it: list, then detail.
_VERP_RE = re.compile(r"<?([a-z0-9._-]+)-bounces\+([^@\s<>]+)@([a-z0-9.-]+)>?", re.I)


@dataclass(frozen=True)
class Complaint:
    feedback_type: str  # abuse, fraud, virus, not-spam, other (lower-case)
    recipients: tuple[str, ...]  # Original-Rcpt-To, normalized: claimed, proves nothing
    tokens: tuple[str, ...]  # membership tokens found in the reported message
    list_ids: tuple[str, ...]  # List-Id of the reported message
    # (list address, VERP detail) of the reported copy's Return-Path, still to be verified
    verp: tuple[tuple[str, str], ...]

    @property
    def is_spam_complaint(self) -> bool:
        """Only "this is spam" ends a membership; "not-spam" and the rest do not."""
        return self.feedback_type in ("abuse", "fraud")


def _fields(part: Message) -> Message:
    """The header-like fields of a message/feedback-report or text/rfc822-headers part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else Message()
    return HeaderParser().parsestr(str(payload).lstrip("\r\n"))


def _reported(part: Message) -> Message:
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return Message()
    return _fields(part)


def parse_arf(msg: Message) -> Complaint | None:
    """The complaint an ARF report makes, or None for anything else. `msg` is the report as
    compat32 reads it, once `core.message.parse` found it within the limits."""
    if (msg.get_content_type() != "multipart/report"
            or (msg.get_param("report-type") or "").lower() != "feedback-report"):
        return None
    parts = msg.get_payload()
    if not isinstance(parts, list):
        return None
    report = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if report is None:
        return None
    fields = _fields(report)
    recipients = tuple(dict.fromkeys(
        a for v in fields.get_all("Original-Rcpt-To", []) if (a := try_normalize(str(v)))
    ))
    original = next((_reported(p) for p in parts
                     if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")),
                    Message())
    evidence = " ".join(str(v) for v in original.get_all("List-Unsubscribe", []))
    body = original.get_payload() if not original.is_multipart() else ""
    evidence += " " + (body if isinstance(body, str) else "").replace("=\n", "").replace(
        "=\r\n", "")
    list_ids = tuple(m[1].lower() for v in original.get_all("List-Id", [])
                     if (m := _LIST_ID_RE.search(str(v))))
    verp = tuple(dict.fromkeys(
        (f"{m[1]}@{m[3]}".lower(), m[2].lower())
        for v in original.get_all("Return-Path", []) if (m := _VERP_RE.search(str(v)))
    ))
    return Complaint(
        feedback_type=str(fields.get("Feedback-Type", "")).strip().lower(),
        recipients=recipients,
        tokens=tuple(dict.fromkeys(t.lower() for t in _TOKEN_RE.findall(evidence))),
        list_ids=list_ids,
        verp=verp,
    )
