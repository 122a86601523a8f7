"""Notices as the list sends them: a rendered template into one message for one person.

A template starts with a `Subject:` line, then a blank line, then the body, so an admin
edits both in one file. Every notice says it is automatic (RFC 3834), carries our loop
marker so a copy coming back is recognised, and threads under the message it answers.
Pure: the rendered text, ids and time come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime

from listserv.core.compose import automatic_headers, header_text, mailbox
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
    """One notice; `auto` is auto-replied for answers and auto-generated for the rest.

    Written with the standard library's `EmailMessage`, as is all new mail but the digest's
    shared bytes (`digest.message`); an author's own message is edited in compat32
    (`compose`). Headers are RFC 2047 words, or raw UTF-8 (RFC 6532) when an address is
    not ASCII, which no encoded word can carry."""
    subject, body = split_template(rendered, template_name)
    utf8 = not (recipient.isascii() and from_address.isascii())
    msg = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
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
    for name, value in automatic_headers(auto):
        msg[name] = value
    msg["Precedence"] = "bulk"
    msg["List-Id"] = f"<{list_id}>"
    msg["X-Loop"] = loop_value
    # 7bit when it can be (most templates), else quoted-printable: readable in any client,
    # and no 8BITMIME needed for the body.
    plain = body.isascii() and max(map(len, body.splitlines() or [""])) <= 998
    msg.set_content(body, cte="7bit" if plain else "quoted-printable")
    # (file name, application/ subtype, bytes) each, after the text: a member's data export.
    for filename, subtype, data in attachments:
        msg.add_attachment(data, maintype="application", subtype=subtype, filename=filename)
    return Notice(envelope_sender, recipient, msg.as_bytes())
