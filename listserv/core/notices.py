"""Notices as the list sends them: a rendered template into one message for one person.

A template starts with a `Subject:` line, then a blank line, then the body, so an admin
edits both in one file. Every notice says it is automatic (RFC 3834), carries our loop
marker so a copy coming back is recognised, and threads under the message it answers.
Pure: the rendered text, ids and time come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.message import Message
from email.mime.application import MIMEApplication
from email.utils import format_datetime

from listserv.core.compose import header_text, mailbox, to_bytes
from listserv.core.headers import one_line


class TemplateFormatError(ValueError):
    """A notice template without its `Subject:` first line."""


@dataclass(frozen=True)
class Notice:
    """What the sender needs: envelope sender, recipient, and the whole message."""

    sender: str
    recipient: str
    payload: bytes


def split_template(rendered: str, name: str) -> tuple[str, str]:
    """(subject, body) of a rendered notice template."""
    head, _, body = rendered.lstrip("\n").partition("\n")
    key, colon, subject = head.partition(":")
    if not colon or key.strip().lower() != "subject" or not subject.strip():
        raise TemplateFormatError(f"template {name} must start with a 'Subject: ...' line")
    return one_line(subject), body.lstrip("\n").rstrip() + "\n"


def compose(
    *,
    rendered: str,
    template_name: str,
    from_name: str,
    from_address: str,
    envelope_sender: str,
    recipient: str,
    list_id: str,
    loop_value: str,
    message_id: str,
    now: datetime,
    in_reply_to: str | None = None,
    reply_to: str | None = None,
    auto: str = "auto-replied",
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> Notice:
    """One notice; `auto` is auto-replied for answers and auto-generated for the rest."""
    subject, body = split_template(rendered, template_name)
    msg = Message()
    msg["From"] = mailbox(from_name, from_address)
    msg["To"] = recipient
    msg["Subject"] = header_text(subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Auto-Submitted"] = auto
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Precedence"] = "bulk"
    msg["List-Id"] = f"<{list_id}>"
    msg["X-Loop"] = loop_value
    msg["MIME-Version"] = "1.0"
    charset = Charset("us-ascii") if body.isascii() else Charset("utf-8")
    if not body.isascii():
        charset.body_encoding = QP
    if not attachments:
        msg.set_payload(body, charset)
        return Notice(envelope_sender, recipient, to_bytes(msg))
    # (file name, application/ subtype, bytes) each, after the text: a member's data export.
    text = Message()
    text.set_payload(body, charset)
    parts = [text]
    for filename, subtype, data in attachments:
        part = MIMEApplication(data, subtype)
        part.add_header("Content-Disposition", "attachment", filename=filename)
        parts.append(part)
    msg["Content-Type"] = "multipart/mixed"
    msg.set_payload(parts)
    return Notice(envelope_sender, recipient, to_bytes(msg))
