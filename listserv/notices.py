"""Messages we write to one person (e.g. "your delivery was disabled"), as bytes to queue.

The text comes from a template whose first line is `Subject: ...`; every header value is
sanitized to one line, and the message is marked auto-generated (RFC 3834) so that
well-behaved software never answers it.
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from .message import one_line


def split_subject(text: str) -> tuple[str, str]:
    """(subject, body) of a rendered notice template."""
    first, _, body = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise ValueError("a notice template must start with a 'Subject:' line")
    return one_line(first.split(":", 1)[1]).strip(), body.lstrip("\n")


def render(
    text: str, *, from_name: str, from_address: str, to: str, now: datetime, message_id: str
) -> bytes:
    """A complete plain-text message from a rendered template."""
    subject, body = split_subject(text)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=one_line(from_name), addr_spec=from_address)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{message_id}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "bulk"
    msg.set_content(body)
    return msg.as_bytes()
