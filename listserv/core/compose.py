"""Posts as the list sends them: the author's message with list headers and a footer.

The body and MIME structure stay the author's; the Message-ID, In-Reply-To and References
stay too, so mail clients thread replies. Every header value we write is one sanitized line,
so nothing in a post can inject a header into what we send.

New mail is written with `EmailMessage` (notices, the archive's mbox); an author's message is
edited here in the `compat32` form it was parsed in (`headers.POLICY`), because the rich
policy is quadratic on crafted headers and would re-fold, re-encode or reject what the
author wrote; digests join pre-encoded bytes (`digest.message`, measured there).
"""

from __future__ import annotations

import email
from dataclasses import dataclass
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr
from io import BytesIO
from typing import Protocol

from listserv.core.addresses import list_id, role_address
from listserv.core.headers import POLICY, decode_bytes, decode_header_value, one_line
from listserv.core.threads import strip_prefix

# Headers of the incoming message that would lie, leak, or break once we resend it.
STRIP_HEADERS = (
    "Return-Path", "Delivered-To", "X-Original-To", "Envelope-To",
    "DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results",
    "List-Id", "List-Post", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Help",
    "List-Subscribe", "List-Archive", "List-Owner", "Archived-At", "Precedence", "X-BeenThere",
    "Errors-To", "Sender", "Auto-Submitted", "X-Auto-Response-Suppress",
)

ARC_HEADERS = ("ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results")

_CONTENT_HEADERS = ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
                    "Content-Description", "Content-ID")


@dataclass(frozen=True)
class ListInfo:
    """What composing needs to know about a list, as plain values."""

    address: str
    title: str
    subject_prefix: str = ""
    from_rewrite: str = "always"
    archive_url: str = ""

    @property
    def list_id(self) -> str:
        return list_id(self.address)


class ListRow(Protocol):
    """What `list_info` reads of a list (a stored `MailingList`)."""

    address: str
    title: str
    subject_prefix: str
    from_rewrite: str


def list_info(ml: ListRow, archive_url: str = "") -> ListInfo:
    """A list's values for composing: posts and digests alike."""
    return ListInfo(address=ml.address, title=ml.title, subject_prefix=ml.subject_prefix,
                    from_rewrite=ml.from_rewrite, archive_url=archive_url)


def header_text(text: str, name: str = "Subject") -> str:
    """One line, RFC 2047-encoded when it is not plain ASCII, its first line leaving room
    for the header's `name` (else the generator folds right after the colon, and readers
    see the value start with a space)."""
    text = one_line(text)
    return text if text.isascii() else Header(text, "utf-8", header_name=name).encode()


def mailbox(name: str, address: str) -> str:
    return formataddr((one_line(name), address), charset="utf-8")


def prefixed(subject: str, prefix: str) -> str:
    """The subject with the list prefix in front exactly once, also in replies."""
    subject = one_line(subject)
    if not prefix:
        return subject
    rest = strip_prefix(subject, prefix)
    return f"{prefix.strip()} {rest}".strip()


def automatic_headers(keyword: str = "auto-generated") -> tuple[tuple[str, str], ...]:
    """What every message we send on our own account carries, and no post does (RFC 3834,
    and Microsoft's X-Auto-Response-Suppress), so that no vacation reply or read receipt
    answers it: `auto-replied` on an answer to someone's mail, `auto-generated` on the rest
    (digests, reports, forwards)."""
    return (("Auto-Submitted", keyword), ("X-Auto-Response-Suppress", "All"))


def list_headers(info: ListInfo) -> list[tuple[str, str]]:
    """RFC 2369 and RFC 2919 headers, plus the loop marker we recognise on the way back in."""
    request = role_address(info.address, "request")
    headers = [
        ("List-Id", f"{header_text(info.title, 'List-Id')} <{info.list_id}>"),
        ("List-Post", f"<mailto:{info.address}>"),
        ("List-Help", f"<mailto:{request}?subject=help>"),
        ("List-Subscribe", f"<mailto:{role_address(info.address, 'join')}>"),
        ("List-Unsubscribe", f"<mailto:{role_address(info.address, 'leave')}>"),
        ("Precedence", "list"),
        ("X-BeenThere", info.address),
    ]
    if info.archive_url:
        headers.append(("List-Archive", f"<{info.archive_url}>"))
    return headers


def _text_charset(text: str) -> Charset:
    if text.isascii():
        return Charset("us-ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return charset


def _append_footer(msg: Message, footer: str) -> None:
    """Add the footer as readers see it, without touching the author's other parts."""
    if not msg.is_multipart() and msg.get_content_type() == "text/plain":
        data = msg.get_payload(decode=True)
        text = decode_bytes(data if isinstance(data, bytes) else b"", msg.get_content_charset())
        text = text.rstrip("\r\n") + "\n\n" + footer
        del msg["Content-Transfer-Encoding"]
        msg.set_payload(text, _text_charset(text))
        return
    footer_part = MIMEText(footer, "plain", _text_charset(footer))
    footer_part.add_header("Content-Disposition", "inline")
    if msg.get_content_type() == "multipart/mixed" and isinstance(msg.get_payload(), list):
        msg.attach(footer_part)
        return
    inner = Message()
    for name in _CONTENT_HEADERS:
        for value in msg.get_all(name, []):
            inner[name] = value
        del msg[name]
    inner.set_payload(msg.get_payload())
    msg["Content-Type"] = "multipart/mixed"
    msg.set_payload([inner, footer_part])
    if "MIME-Version" not in msg:
        msg["MIME-Version"] = "1.0"


def to_bytes(msg: Message) -> bytes:
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=compat32.clone(linesep="\r\n")).flatten(msg)
    return out.getvalue()


def render_post(
    raw: bytes, info: ListInfo, author_name: str, author_address: str, footer: str,
    reply_to: str = "", unsubscribe: str = "", author_alias: str = "",
    keep_arc: bool = False, archived_at: str = "",
) -> bytes:
    """The post as delivered to members (RFC 2369 headers, DMARC-safe From, footer).

    `reply_to` is the thread's tagged list address, so a reply lands in the thread even
    from a client that sends no In-Reply-To; the list address when empty.
    `unsubscribe` is a member's own List-Unsubscribe value; with an HTTPS link first it
    also gets List-Unsubscribe-Post, so providers can offer one-click unsubscribe (RFC 8058).
    `author_alias` is the From address of lists whose from_rewrite is "alias".
    `keep_arc` keeps the ARC sets of earlier hops, so our seal continues their chain.
    `archived_at` is the post's permalink in the web archive (RFC 5064).
    """
    msg = email.message_from_bytes(raw, policy=POLICY)
    for name in STRIP_HEADERS:
        if not (keep_arc and name in ARC_HEADERS):
            del msg[name]
    subject = decode_header_value(msg.get("Subject"))
    del msg["Subject"]
    msg["Subject"] = header_text(prefixed(subject, info.subject_prefix))
    if info.from_rewrite in ("always", "alias"):
        shown = author_name or author_address.replace("@", " at ")
        del msg["From"]
        del msg["Reply-To"]
        if info.from_rewrite == "alias" and author_alias:
            # Writing to the From reaches the author privately; the address stays hidden.
            shown = author_name or "A member"
            msg["From"] = mailbox(f"{shown} via {info.title}", author_alias)
        else:
            msg["From"] = mailbox(f"{shown} via {info.title}", info.address)
            msg["X-Original-From"] = mailbox(author_name, author_address)
        msg["Reply-To"] = mailbox(info.title, reply_to or info.address)
    for name, value in list_headers(info):
        msg[name] = unsubscribe if name == "List-Unsubscribe" and unsubscribe else value
    if unsubscribe.startswith("<http"):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if archived_at:
        msg["Archived-At"] = f"<{archived_at}>"
    _append_footer(msg, footer)
    return to_bytes(msg)


# Headers of a private message that could reveal the writer's address once relayed.
REVEALING_HEADERS = ("From", "Reply-To", "Sender", "X-Original-From", "Return-Path",
                     "Received", "X-Originating-IP", "Disposition-Notification-To",
                     "Return-Receipt-To")


def render_relay(raw: bytes, from_name: str, from_address: str) -> bytes:
    """A member's private message to an author's alias, as the author gets it: From the
    writer's own alias, so replying goes back the same private way."""
    msg = email.message_from_bytes(raw, policy=POLICY)
    for name in (*STRIP_HEADERS, *REVEALING_HEADERS):
        del msg[name]
    msg["From"] = mailbox(from_name, from_address)
    return to_bytes(msg)


# Headers of mail forwarded to people who run the lists that would fail or mislead there.
FORWARD_STRIP = ("From", "Reply-To", "Sender", "Return-Path", "X-Original-From",
                 "DKIM-Signature", *ARC_HEADERS)


def render_forward(raw: bytes, author_name: str, author_address: str, shown_as: str,
                   from_address: str, loop: str) -> bytes:
    """Mail to an owner or postmaster address as the owners get it: From our own address
    (`from_address`, named "<author> via <shown_as>") and Reply-To the author, as posts are.
    The author's own From would fail DMARC at the owners' provider when their domain (Gmail,
    Yahoo) publishes p=reject; a plain reply still reaches the author. `loop` is stamped in
    X-Loop, so the forward never comes back in."""
    msg = email.message_from_bytes(raw, policy=compat32)
    for name in FORWARD_STRIP:
        del msg[name]
    shown = author_name or author_address.replace("@", " at ")
    msg["From"] = mailbox(f"{shown} via {shown_as}", from_address)
    msg["Reply-To"] = mailbox(author_name, author_address)
    msg["X-Original-From"] = mailbox(author_name, author_address)
    msg["X-Loop"] = loop
    return to_bytes(msg)
